/* Writer that sends a stream's packets as UDP datagrams with sendmmsg,
 * gathering each packet's payload straight from the items' memory. */
#ifndef SPEAD2_SEND_UDP_H
#define SPEAD2_SEND_UDP_H

#include <sys/socket.h>

#include "send_stream.h"

/* Sends substream i to addrs[i] (each ``addrlen`` bytes long, of the
 * socket's family).  Takes ownership of ``fd`` (closed when the stream is
 * destroyed, or on failure).  Returns NULL on allocation failure. */
send_stream *send_udp_stream_new(tpool_t *tp, int fd, const struct sockaddr_storage *addrs,
                                 size_t n_addrs, socklen_t addrlen, const send_config *config);

/* Fill a socket address from a numeric host string.  Returns 0 or -1. */
int send_make_sockaddr(int family, const char *host, int port, unsigned int flowinfo,
                       unsigned int scope_id, struct sockaddr_storage *out, socklen_t *len);

#endif
