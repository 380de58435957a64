/* Writer that copies a stream's packets into in-process queues
 * (spead2.InprocQueue), one queue per substream. */
#ifndef SPEAD2_SEND_INPROC_H
#define SPEAD2_SEND_INPROC_H

#include "inproc.h"
#include "send_stream.h"

/* Takes a reference to each of the ``n_queues`` queues.  Returns NULL on
 * allocation failure. */
send_stream *send_inproc_stream_new(tpool_t *tp, spead_inproc_queue *const *queues,
                                    size_t n_queues, const send_config *config);

#endif
