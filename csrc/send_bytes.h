/* Writer that appends a stream's packets to a growing memory buffer. */
#ifndef SPEAD2_SEND_BYTES_H
#define SPEAD2_SEND_BYTES_H

#include "send_stream.h"

send_stream *send_bytes_stream_new(tpool_t *tp, const send_config *config);
/* Current contents; call between send_stream_lock_idle and send_stream_unlock. */
const uint8_t *send_bytes_data(send_stream *s, size_t *size);

/* Copy the contents out (to fresh memory, with huge pages where possible). */
void send_bytes_copy_out(uint8_t *dst, const uint8_t *src, size_t size);

#endif
