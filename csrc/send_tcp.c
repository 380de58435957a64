#include "send_tcp.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* Gather pieces handed to one sendmsg: headers (and payloads too scattered
 * to gather) are bump-allocated in the arena between flushes. */
#define TCP_MAX_IOV IOV_MAX
#define TCP_ARENA_SIZE (64 * 1024)
/* Payload pieces per packet before its payload is copied instead. */
#define TCP_MAX_SEGS 16
/* A copied packet is at most this long; longer ones are sent in pieces. */
#define TCP_COPY_LIMIT ((size_t) 1 << 17)

typedef struct {
    int fd;
    int error;                /* sticky: a broken connection stays broken */
    uint8_t *arena;
    size_t arena_size;
    size_t arena_used;
    int n_iov;
    struct iovec iov[TCP_MAX_IOV];
} tcp_writer;

/* Write every gathered piece, however the kernel splits it up: partial
 * writes resume where they stopped, and a full socket buffer is waited out
 * with poll (the peer's reading paces us, as TCP intends). */
static int flush(tcp_writer *w)
{
    struct iovec *iov = w->iov;
    int n = w->n_iov;
    int error = 0;
    while (n > 0) {
        struct msghdr m;
        memset(&m, 0, sizeof(m));
        m.msg_iov = iov;
        m.msg_iovlen = (size_t) n;
        ssize_t r = sendmsg(w->fd, &m, MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                struct pollfd pfd = {w->fd, POLLOUT, 0};
                if (poll(&pfd, 1, -1) < 0 && errno != EINTR) {
                    error = errno;
                    break;
                }
                continue;
            }
            error = errno;
            break;
        }
        size_t left = (size_t) r;
        while (n > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (uint8_t *) iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    w->n_iov = 0;
    w->arena_used = 0;
    return error;
}

/* Room for one more packet: its header (and perhaps a copy of its payload)
 * in the arena and its pieces in the iovec array. */
static int make_room(tcp_writer *w, size_t packet_size)
{
    size_t copy = packet_size < TCP_COPY_LIMIT ? packet_size : SEND_PACKET_PREFIX + 8 * 65535;
    if (w->n_iov + 1 + TCP_MAX_SEGS > TCP_MAX_IOV || w->arena_size - w->arena_used < copy)
        return flush(w);
    return 0;
}

static int tcp_write_group(send_stream *s, send_req *req)
{
    tcp_writer *w = s->writer;
    if (w->error)
        return w->error;
    size_t packet_size = 0;
    for (size_t i = 0; i < req->n_heaps; i++)
        if (req->heaps[i].layout.packet_size > packet_size)
            packet_size = req->heaps[i].layout.packet_size;
    send_group_iter g;
    uint64_t packets = send_req_start(req, &g);
    int e = 0;
    for (uint64_t k = 0; k < packets; k++) {
        if (send_stream_pace_due(s)) {
            if ((e = flush(w)) != 0)
                break;
            send_stream_pace_wait(s);
        }
        if ((e = make_room(w, packet_size)) != 0)
            break;
        uint8_t *hdr = w->arena + w->arena_used;
        size_t hdr_len, payload;
        size_t h = send_group_next(&g, hdr, &hdr_len, &payload);
        if (h == SIZE_MAX)
            break;
        send_packetizer *pz = &req->pz[h];
        struct iovec *iov = w->iov + w->n_iov;
        int segs = send_packetizer_segments(pz, payload, iov + 1, TCP_MAX_SEGS);
        iov[0].iov_base = hdr;
        if (segs >= 0) {
            iov[0].iov_len = hdr_len;
            w->n_iov += 1 + segs;
            w->arena_used += (hdr_len + 7) & ~(size_t) 7;
        } else if (hdr_len + payload <= w->arena_size - w->arena_used) {
            send_packetizer_copy(pz, hdr + hdr_len, payload);
            iov[0].iov_len = hdr_len + payload;
            w->n_iov++;
            w->arena_used += (hdr_len + payload + 7) & ~(size_t) 7;
        } else {
            /* A huge packet of many small items: TCP has no datagrams, so
             * it may go in several writes. */
            iov[0].iov_len = hdr_len;
            w->n_iov++;
            w->arena_used += (hdr_len + 7) & ~(size_t) 7;
            while (payload > 0 && e == 0) {
                if ((e = flush(w)) != 0)
                    break;
                size_t chunk = payload < w->arena_size ? payload : w->arena_size;
                send_packetizer_copy(pz, w->arena, chunk);
                w->iov[0].iov_base = w->arena;
                w->iov[0].iov_len = chunk;
                w->n_iov = 1;
                w->arena_used = w->arena_size;
                payload -= chunk;
            }
            if (e)
                break;
        }
        send_stream_pace_account(s, hdr_len + payload, &req->heaps[h]);
    }
    if (e == 0)
        e = flush(w);
    if (e) {
        w->error = e;
        w->n_iov = 0;
        w->arena_used = 0;
    }
    return e;
}

static void tcp_destroy(send_stream *s)
{
    tcp_writer *w = s->writer;
    if (w) {
        if (w->fd >= 0)
            close(w->fd);
        free(w->arena);
        free(w);
    }
}

static const send_writer_ops tcp_ops = {tcp_write_group, tcp_destroy};

send_stream *send_tcp_stream_new(tpool_t *tp, int fd, const send_config *config)
{
    tcp_writer *w = calloc(1, sizeof(*w));
    if (!w) {
        close(fd);
        return NULL;
    }
    w->fd = fd;
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0)
        fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    size_t packet = config->max_packet_size & ~(size_t) 7;
    if (packet > TCP_COPY_LIMIT)
        packet = TCP_COPY_LIMIT;
    /* Room for a header of the most pointers a packet can carry, too. */
    w->arena_size = TCP_ARENA_SIZE + packet + SEND_PACKET_PREFIX + 8 * 65535;
    w->arena = malloc(w->arena_size);
    send_stream *s = NULL;
    if (w->arena)
        s = send_stream_new(&tcp_ops, w, tp, config, 1);
    if (!s) {
        tcp_destroy(&(send_stream){.writer = w});
        return NULL;
    }
    return s;
}
