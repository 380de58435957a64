/* UDP reader: batched recvmmsg on a non-blocking socket watched by the
 * thread pool.
 *
 * Where the kernel offers it (Linux 5.0 and later), the socket receives with
 * UDP_GRO: the kernel may hand over several datagrams of one flow coalesced
 * into one buffer, all of one segment size (given in a control message)
 * except perhaps the last. A sender using UDP_SEGMENT on loopback then
 * costs one receive call per segment train rather than per datagram. The
 * reader splits the buffer back into datagrams. Setting SPEAD2_UDP_GRO=0 in
 * the environment turns it off. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "recv_watch.h"

#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif

#define UDP_BATCH 64
#define GRO_BATCH 16
#define UDP_ROUNDS 16
/* No UDP datagram (nor coalesced train) carries more than 65535 bytes, so a
 * larger max_size needs no larger receive slots (and must not size them:
 * slot * UDP_BATCH would overflow). */
#define UDP_SLOT_LIMIT 65536
#define GRO_CONTROL CMSG_SPACE(sizeof(int))

typedef struct {
    spead_watched_reader w;
    size_t max_size;
    int gro;                     /* receiving coalesced datagrams */
    int batch;                   /* receive slots in use */
    uint8_t *buffers;
    uint8_t *control;            /* GRO: one control message per slot */
    struct mmsghdr msgs[UDP_BATCH];
    struct iovec iov[UDP_BATCH];
    int n_pending, next_pending; /* slots received but not yet assembled */
    size_t seg_offset;           /* GRO: where the next datagram starts in the current slot */
} udp_reader;

/* The segment size the kernel reports for a coalesced slot, or 0. */
static size_t gro_segment_size(struct mmsghdr *m)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m->msg_hdr); c; c = CMSG_NXTHDR(&m->msg_hdr, c)) {
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
            int size;
            memcpy(&size, CMSG_DATA(c), sizeof(size));
            return size > 0 ? (size_t) size : 0;
        }
    }
    return 0;
}

/* The next datagram of the pending slots: its bytes and length, and
 * whether the kernel cut it short. Returns 0 when there is none. */
static int next_datagram(udp_reader *r, const uint8_t **data, size_t *len, int *truncated)
{
    while (r->next_pending < r->n_pending) {
        struct mmsghdr *m = &r->msgs[r->next_pending];
        const uint8_t *base = m->msg_hdr.msg_iov->iov_base;
        size_t total = m->msg_len;
        size_t seg = r->gro ? gro_segment_size(m) : 0;
        if (seg == 0 || seg >= total) {
            /* one datagram in this slot */
            r->next_pending++;
            r->seg_offset = 0;
            *data = base;
            *len = total;
            *truncated = (m->msg_hdr.msg_flags & MSG_TRUNC) != 0;
            return 1;
        }
        if (r->seg_offset >= total) {
            r->next_pending++;
            r->seg_offset = 0;
            continue;
        }
        *data = base + r->seg_offset;
        *len = total - r->seg_offset < seg ? total - r->seg_offset : seg;
        *truncated = 0;
        r->seg_offset += seg;
        if (r->seg_offset >= total) {
            r->next_pending++;
            r->seg_offset = 0;
        }
        return 1;
    }
    return 0;
}

static int udp_next(spead_reader *base, spead_packet *pkt)
{
    udp_reader *r = (udp_reader *) base;
    recv_stream *s = base->stream;
    const uint8_t *data;
    size_t len;
    int truncated;
    if (!next_datagram(r, &data, &len, &truncated))
        return RECV_READ_NONE;
    if (truncated || len > r->max_size) {
        recv_stream_count_locked(s, SPEAD_STAT_TOO_LARGE_PACKETS);
        recv_stream_log(s, SPEAD_LOG_INFO, "packet rejected: larger than max_size (%zu bytes)",
                        r->max_size);
        return RECV_READ_SKIP;
    }
    int st = spead_decode_packet(data, len, pkt);
    if (st != SPEAD_PACKET_OK) {
        recv_stream_count_locked(s, SPEAD_STAT_BAD_PACKETS);
        recv_stream_log(s, SPEAD_LOG_INFO, "packet rejected: %s", spead_packet_status_string(st));
        return RECV_READ_SKIP;
    }
    return RECV_READ_PACKET;
}

/* Receive and assemble until the socket is drained (or enough rounds have
 * passed for others to get a turn). Returns 1 when the socket watch should
 * be re-armed. */
static int udp_process(spead_watched_reader *w)
{
    udp_reader *r = (udp_reader *) w;
    recv_stream *s = w->base.stream;
    if (!watched_reader_enter(w))
        return 0;

    int rearm = 1;
    for (int round = 0; round < UDP_ROUNDS; round++) {
        if (r->next_pending >= r->n_pending) {
            for (int i = 0; i < r->batch; i++) {
                r->msgs[i].msg_hdr.msg_flags = 0;
                r->msgs[i].msg_len = 0;
                if (r->gro)
                    r->msgs[i].msg_hdr.msg_controllen = GRO_CONTROL;
            }
            int n = recvmmsg(w->fd, r->msgs, r->batch, MSG_DONTWAIT, NULL);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno != EAGAIN && errno != EWOULDBLOCK)
                    recv_stream_log(s, SPEAD_LOG_WARNING, "UDP receive failed: %s",
                                    strerror(errno));
                break;
            }
            if (n == 0)
                break;
            r->n_pending = n;
            r->next_pending = 0;
            r->seg_offset = 0;
        }
        int got = r->n_pending;
        /* everything received goes into assembly unless the ring fills, so
         * nothing is left behind for an epoll wake-up that may never come */
        int res = recv_stream_run_batch(s, &w->base, SIZE_MAX);
        if (res == RECV_BATCH_DONE || res == RECV_BATCH_PAUSED) {
            /* finished, or resumed later by a task */
            rearm = 0;
            break;
        }
        if (got < r->batch)
            break; /* the socket is probably drained: wait for readiness */
    }
    watched_reader_leave(w);
    return rearm;
}

static void udp_destroy(spead_reader *base)
{
    udp_reader *r = (udp_reader *) base;
    if (r->w.fd >= 0)
        close(r->w.fd);
    free(r->buffers);
    free(r->control);
    free(r);
}

static const spead_reader_ops udp_ops = {
    .next = udp_next,
    .start = watched_reader_start,
    .resume = watched_reader_resume,
    .close = watched_reader_close,
    .destroy = udp_destroy,
    .lossy = 1,
};

/* Whether to ask for coalesced datagrams (unless SPEAD2_UDP_GRO=0). */
static int want_gro(void)
{
    const char *env = getenv("SPEAD2_UDP_GRO");
    return !(env && env[0] == '0');
}

int recv_add_udp_reader(recv_stream *s, int fd, size_t max_size)
{
    udp_reader *r = calloc(1, sizeof(*r));
    if (!r) {
        close(fd);
        return -ENOMEM;
    }
    watched_reader_init(&r->w, &udp_ops, fd, udp_process, "UDP socket");
    r->max_size = max_size;
    int one = 1;
    r->gro = want_gro() && setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof(one)) == 0;
    r->batch = r->gro ? GRO_BATCH : UDP_BATCH;
    /* one extra byte per slot detects datagrams larger than max_size; a
     * coalesced train may fill a whole slot */
    size_t slot = r->gro ? UDP_SLOT_LIMIT
                         : (max_size < UDP_SLOT_LIMIT ? max_size : UDP_SLOT_LIMIT) + 1;
    r->buffers = malloc(slot * r->batch);
    r->control = r->gro ? calloc(r->batch, GRO_CONTROL) : NULL;
    if (!r->buffers || (r->gro && !r->control)) {
        close(fd);
        free(r->buffers);
        free(r->control);
        free(r);
        return -ENOMEM;
    }
    for (int i = 0; i < r->batch; i++) {
        r->iov[i].iov_base = r->buffers + i * slot;
        r->iov[i].iov_len = slot;
        memset(&r->msgs[i], 0, sizeof(r->msgs[i]));
        r->msgs[i].msg_hdr.msg_iov = &r->iov[i];
        r->msgs[i].msg_hdr.msg_iovlen = 1;
        if (r->gro) {
            r->msgs[i].msg_hdr.msg_control = r->control + i * GRO_CONTROL;
            r->msgs[i].msg_hdr.msg_controllen = GRO_CONTROL;
        }
    }
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    recv_stream_log(s, SPEAD_LOG_DEBUG, "UDP reader: %s",
                    r->gro ? "coalesced datagrams (GRO)" : "one datagram per slot");
    if (recv_stream_add_reader(s, &r->w.base) != 0)
        return -ESHUTDOWN;
    return 0;
}
