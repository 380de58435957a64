/* The machinery shared by readers whose input is a file descriptor that the
 * thread pool watches (UDP and TCP sockets, in-process queues): starting
 * the watch, running the reader's work when the descriptor is ready,
 * resuming after a full ring, and closing without racing a running batch. */
#ifndef SPEAD2_RECV_WATCH_H
#define SPEAD2_RECV_WATCH_H

#include <pthread.h>

#include "recv_stream.h"

typedef struct spead_watched_reader spead_watched_reader;

struct spead_watched_reader {
    spead_reader base;
    int fd;                      /* owned: closed when the reader closes */
    int64_t watch;               /* stream lock; -1 when not watching */
    int busy;                    /* stream lock: a thread is in ``process`` */
    pthread_t busy_thread;
    /* Read and assemble what is ready. Returns 1 when the descriptor should
     * be watched again, 0 when not (finished, or paused until resumed). */
    int (*process)(spead_watched_reader *r);
    const char *what;            /* names the input in log lines */
};

/* Set up the common part; ``fd`` becomes the reader's. */
void watched_reader_init(spead_watched_reader *r, const spead_reader_ops *ops, int fd,
                         int (*process)(spead_watched_reader *r), const char *what);
/* Bracket ``process``: enter returns 0 (and marks nothing) if the reader
 * has been closed. */
int watched_reader_enter(spead_watched_reader *r);
void watched_reader_leave(spead_watched_reader *r);

/* spead_reader_ops members for such readers */
void watched_reader_start(spead_reader *base);
void watched_reader_resume(spead_reader *base);
void watched_reader_close(spead_reader *base);

#endif
