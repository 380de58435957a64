/* UDP reader: batched recvmmsg on a non-blocking socket watched by the
 * thread pool. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "recv_stream.h"

#define UDP_BATCH 64
#define UDP_ROUNDS 16
/* No UDP datagram carries more than 65535 bytes, so a larger max_size needs
 * no larger receive slots (and must not size them: slot * UDP_BATCH would
 * overflow). */
#define UDP_SLOT_LIMIT 65536

typedef struct {
    spead_reader base;
    int fd;
    int64_t watch;               /* stream lock; -1 when not watching */
    size_t max_size;
    uint8_t *buffers;
    struct mmsghdr msgs[UDP_BATCH];
    struct iovec iov[UDP_BATCH];
    int n_pending, next_pending; /* datagrams received but not yet assembled */
    int busy;                    /* stream lock: a thread is in udp_process */
    pthread_t busy_thread;
} udp_reader;

static int udp_next(spead_reader *base, spead_packet *pkt)
{
    udp_reader *r = (udp_reader *) base;
    recv_stream *s = base->stream;
    while (r->next_pending < r->n_pending) {
        struct mmsghdr *m = &r->msgs[r->next_pending++];
        const uint8_t *data = m->msg_hdr.msg_iov->iov_base;
        if ((m->msg_hdr.msg_flags & MSG_TRUNC) || m->msg_len > r->max_size) {
            recv_stream_count_locked(s, SPEAD_STAT_TOO_LARGE_PACKETS);
            recv_stream_log(s, SPEAD_LOG_INFO,
                            "packet rejected: larger than max_size (%zu bytes)", r->max_size);
            return RECV_READ_SKIP;
        }
        int st = spead_decode_packet(data, m->msg_len, pkt);
        if (st != SPEAD_PACKET_OK) {
            recv_stream_count_locked(s, SPEAD_STAT_BAD_PACKETS);
            recv_stream_log(s, SPEAD_LOG_INFO, "packet rejected: %s",
                            spead_packet_status_string(st));
            return RECV_READ_SKIP;
        }
        return RECV_READ_PACKET;
    }
    return RECV_READ_NONE;
}

static void set_busy(udp_reader *r, int busy)
{
    recv_stream *s = r->base.stream;
    pthread_mutex_lock(&s->lock);
    r->busy = busy;
    if (busy)
        r->busy_thread = pthread_self();
    else if (r->base.closed)
        pthread_cond_broadcast(&s->idle_cond);
    pthread_mutex_unlock(&s->lock);
}

/* Receive and assemble until the socket is drained (or enough rounds have
 * passed for others to get a turn). Returns 1 when the socket watch should
 * be re-armed. */
static int udp_process(udp_reader *r)
{
    recv_stream *s = r->base.stream;
    pthread_mutex_lock(&s->lock);
    if (r->base.closed) {
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
    r->busy = 1;
    r->busy_thread = pthread_self();
    pthread_mutex_unlock(&s->lock);

    int rearm = 1;
    for (int round = 0; round < UDP_ROUNDS; round++) {
        if (r->next_pending >= r->n_pending) {
            for (int i = 0; i < UDP_BATCH; i++) {
                r->msgs[i].msg_hdr.msg_flags = 0;
                r->msgs[i].msg_len = 0;
            }
            int n = recvmmsg(r->fd, r->msgs, UDP_BATCH, MSG_DONTWAIT, NULL);
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
        }
        int got = r->n_pending;
        int res = recv_stream_run_batch(s, &r->base, UDP_BATCH);
        if (res == RECV_BATCH_DONE || res == RECV_BATCH_PAUSED) {
            /* finished, or resumed later by a task */
            rearm = 0;
            break;
        }
        if (got < UDP_BATCH)
            break; /* the socket is probably drained: wait for readiness */
    }
    set_busy(r, 0);
    return rearm;
}

static void udp_release(void *arg)
{
    recv_stream_decref(((udp_reader *) arg)->base.stream);
}

static int udp_ready(void *arg)
{
    return udp_process((udp_reader *) arg);
}

static void udp_resume_task(void *arg)
{
    udp_reader *r = arg;
    recv_stream *s = r->base.stream;
    if (!udp_process(r))
        return;
    pthread_mutex_lock(&s->lock);
    int64_t watch = r->base.closed ? -1 : r->watch;
    pthread_mutex_unlock(&s->lock);
    if (watch >= 0)
        tpool_rearm(s->tp, watch);
}

static void udp_resume(spead_reader *base)
{
    recv_stream_incref(base->stream);
    tpool_post(base->stream->tp, udp_resume_task, base, udp_release);
}

static void udp_start(spead_reader *base)
{
    udp_reader *r = (udp_reader *) base;
    recv_stream *s = base->stream;
    /* hold the lock so that a fast first datagram cannot race the store of
     * the watch handle */
    pthread_mutex_lock(&s->lock);
    if (base->closed) {
        pthread_mutex_unlock(&s->lock);
        return;
    }
    recv_stream_incref(s);
    int64_t h = tpool_watch(s->tp, r->fd, EPOLLIN, udp_ready, r, udp_release);
    if (h < 0) {
        int e = errno;
        pthread_mutex_unlock(&s->lock);
        recv_stream_decref(s);
        recv_stream_log(s, SPEAD_LOG_WARNING, "cannot watch the UDP socket: %s", strerror(e));
        return;
    }
    r->watch = h;
    pthread_mutex_unlock(&s->lock);
}

static void udp_close(spead_reader *base)
{
    udp_reader *r = (udp_reader *) base;
    recv_stream *s = base->stream;
    pthread_mutex_lock(&s->lock);
    base->closed = 1;
    while (r->busy && !pthread_equal(r->busy_thread, pthread_self()))
        pthread_cond_wait(&s->idle_cond, &s->lock);
    int64_t watch = r->watch;
    r->watch = -1;
    int fd = r->fd;
    r->fd = -1;
    pthread_mutex_unlock(&s->lock);
    if (watch >= 0)
        tpool_unwatch(s->tp, watch);
    if (fd >= 0)
        close(fd);
}

static void udp_destroy(spead_reader *base)
{
    udp_reader *r = (udp_reader *) base;
    if (r->fd >= 0)
        close(r->fd);
    free(r->buffers);
    free(r);
}

static const spead_reader_ops udp_ops = {
    .next = udp_next,
    .start = udp_start,
    .resume = udp_resume,
    .close = udp_close,
    .destroy = udp_destroy,
    .lossy = 1,
};

int recv_add_udp_reader(recv_stream *s, int fd, size_t max_size)
{
    udp_reader *r = calloc(1, sizeof(*r));
    if (!r) {
        close(fd);
        return -ENOMEM;
    }
    r->base.ops = &udp_ops;
    r->fd = fd;
    r->watch = -1;
    r->max_size = max_size;
    /* one extra byte per slot detects datagrams larger than max_size */
    size_t slot = (max_size < UDP_SLOT_LIMIT ? max_size : UDP_SLOT_LIMIT) + 1;
    r->buffers = malloc(slot * UDP_BATCH);
    if (!r->buffers) {
        close(fd);
        free(r);
        return -ENOMEM;
    }
    for (int i = 0; i < UDP_BATCH; i++) {
        r->iov[i].iov_base = r->buffers + i * slot;
        r->iov[i].iov_len = slot;
        memset(&r->msgs[i], 0, sizeof(r->msgs[i]));
        r->msgs[i].msg_hdr.msg_iov = &r->iov[i];
        r->msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    if (recv_stream_add_reader(s, &r->base) != 0)
        return -ESHUTDOWN;
    return 0;
}
