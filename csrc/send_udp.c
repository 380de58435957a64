#include "send_udp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Packets per sendmmsg call, and gather pieces per packet (header included);
 * a packet whose payload spans more items than that is copied instead. */
#define UDP_BATCH 64
#define UDP_IOV_PER_PACKET 16
/* Give up on a socket that stays unwritable this long. */
#define UDP_STALL_NS INT64_C(10000000000)

typedef struct {
    int fd;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    size_t packet_size;
    int batch;
    struct mmsghdr *msgs;
    struct iovec *iov;
    uint8_t *arena;       /* batch * packet_size: headers and copied payloads */
} udp_writer;

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int flush_batch(send_stream *s, udp_writer *w, int n, size_t bytes)
{
    send_stream_pace(s, bytes);
    int sent = 0;
    int64_t stalled_since = -1;
    while (sent < n) {
        int r = sendmmsg(w->fd, w->msgs + sent, (unsigned int) (n - sent), 0);
        if (r > 0) {
            sent += r;
            stalled_since = -1;
            continue;
        }
        int e = r < 0 ? errno : EIO;
        if (e == EINTR)
            continue;
        if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS) {
            int64_t now = mono_ns();
            if (stalled_since < 0)
                stalled_since = now;
            else if (now - stalled_since > UDP_STALL_NS)
                return e;
            if (e == ENOBUFS) {
                struct timespec ts = {0, 50000};
                nanosleep(&ts, NULL);
            } else {
                struct pollfd pfd = {w->fd, POLLOUT, 0};
                poll(&pfd, 1, 100);
            }
            continue;
        }
        return e;
    }
    return 0;
}

static int udp_write_heap(send_stream *s, send_req *req)
{
    udp_writer *w = s->writer;
    send_packetizer pz;
    if (send_packetizer_init(&pz, req->items, req->n_items, req->heap_address_bits,
                             (uint64_t) req->cnt, s->max_packet_size) != SEND_LAYOUT_OK)
        return EINVAL;
    /* Pace in bursts: a batch never holds much more than burst_size bytes. */
    size_t batch_limit = s->rate > 0.0 && s->burst_size > 0 ? s->burst_size : SIZE_MAX;
    int n = 0;
    size_t bytes = 0;
    for (;;) {
        uint8_t *hdr = w->arena + (size_t) n * w->packet_size;
        struct iovec *iov = w->iov + (size_t) n * UDP_IOV_PER_PACKET;
        size_t payload;
        size_t hdr_len = send_packetizer_next(&pz, hdr, &payload);
        if (hdr_len == 0)
            break;
        int n_iov;
        int segs = send_packetizer_segments(&pz, payload, iov + 1, UDP_IOV_PER_PACKET - 1);
        if (segs >= 0) {
            iov[0].iov_base = hdr;
            iov[0].iov_len = hdr_len;
            n_iov = segs + 1;
        } else {
            send_packetizer_copy(&pz, hdr + hdr_len, payload);
            iov[0].iov_base = hdr;
            iov[0].iov_len = hdr_len + payload;
            n_iov = 1;
        }
        struct msghdr *m = &w->msgs[n].msg_hdr;
        m->msg_name = &w->addr;
        m->msg_namelen = w->addrlen;
        m->msg_iov = iov;
        m->msg_iovlen = (size_t) n_iov;
        m->msg_control = NULL;
        m->msg_controllen = 0;
        m->msg_flags = 0;
        n++;
        bytes += hdr_len + payload;
        if (n == w->batch || bytes >= batch_limit) {
            int e = flush_batch(s, w, n, bytes);
            if (e)
                return e;
            n = 0;
            bytes = 0;
        }
    }
    if (n > 0)
        return flush_batch(s, w, n, bytes);
    return 0;
}

static void udp_destroy(send_stream *s)
{
    udp_writer *w = s->writer;
    if (w) {
        if (w->fd >= 0)
            close(w->fd);
        free(w->msgs);
        free(w->iov);
        free(w->arena);
        free(w);
    }
}

static const send_writer_ops udp_ops = {udp_write_heap, udp_destroy};

send_stream *send_udp_stream_new(tpool_t *tp, int fd, const struct sockaddr *addr,
                                 socklen_t addrlen, size_t max_packet_size, double rate,
                                 size_t burst_size, size_t max_heaps)
{
    udp_writer *w = calloc(1, sizeof(*w));
    if (!w || addrlen > sizeof(w->addr)) {
        free(w);
        close(fd);
        return NULL;
    }
    w->fd = fd;
    memcpy(&w->addr, addr, addrlen);
    w->addrlen = addrlen;
    w->packet_size = max_packet_size & ~(size_t) 7;
    if (w->packet_size < SEND_MIN_PACKET_SIZE)
        w->packet_size = SEND_MIN_PACKET_SIZE;
    /* Keep the scratch arena around a megabyte even for jumbo packets. */
    size_t batch = (1 << 20) / w->packet_size;
    w->batch = batch < 1 ? 1 : batch > UDP_BATCH ? UDP_BATCH : (int) batch;
    w->msgs = calloc((size_t) w->batch, sizeof(struct mmsghdr));
    w->iov = calloc((size_t) w->batch * UDP_IOV_PER_PACKET, sizeof(struct iovec));
    w->arena = malloc((size_t) w->batch * w->packet_size);
    send_stream *s = NULL;
    if (w->msgs && w->iov && w->arena)
        s = send_stream_new(&udp_ops, w, tp, max_packet_size, rate, burst_size, max_heaps);
    if (!s) {
        w->fd = fd;
        udp_destroy(&(send_stream){.writer = w});
        return NULL;
    }
    return s;
}

int send_make_sockaddr(int family, const char *host, int port, unsigned int flowinfo,
                       unsigned int scope_id, struct sockaddr_storage *out, socklen_t *len)
{
    memset(out, 0, sizeof(*out));
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *) out;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t) port);
        if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
            return -1;
        *len = sizeof(*sin);
        return 0;
    } else if (family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *) out;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t) port);
        sin6->sin6_flowinfo = htonl(flowinfo);
        sin6->sin6_scope_id = scope_id;
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
            return -1;
        *len = sizeof(*sin6);
        return 0;
    }
    return -1;
}
