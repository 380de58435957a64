/* Writer that sends a stream's packets back to back over a connected TCP
 * socket, gathering each packet's payload straight from the items' memory. */
#ifndef SPEAD2_SEND_TCP_H
#define SPEAD2_SEND_TCP_H

#include "send_stream.h"

/* ``fd`` is a connected stream socket; it is made non-blocking and owned by
 * the stream (closed when the stream is destroyed, or on failure).  Returns
 * NULL on allocation failure. */
send_stream *send_tcp_stream_new(tpool_t *tp, int fd, const send_config *config);

#endif
