/* The machinery shared by readers whose input is already in memory (a
 * buffer, a mapped capture file): they run as a chain of pool tasks, one
 * batch each, so that other work interleaves and a full ring can pause
 * them; resuming posts the next task. */
#ifndef SPEAD2_RECV_TASK_H
#define SPEAD2_RECV_TASK_H

#include "recv_stream.h"

/* Packets per task. */
#define RECV_TASK_BATCH 256

/* spead_reader_ops members for such readers (start and resume are alike) */
void task_reader_start(spead_reader *base);
void task_reader_close(spead_reader *base);

#endif
