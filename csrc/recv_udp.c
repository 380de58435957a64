/* UDP reader: batched recvmmsg on a non-blocking socket watched by the
 * thread pool. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "recv.h"

#define UDP_BATCH 64
#define UDP_ROUNDS 16
/* No UDP datagram carries more than 65535 bytes, so a larger max_size needs
 * no larger receive slots (and must not size them: slot * UDP_BATCH would
 * overflow). */
#define UDP_SLOT_LIMIT 65536

typedef struct {
    spead_reader base;
    int fd;
    int64_t watch;
    size_t max_size;
    uint8_t *buffers;
    struct mmsghdr msgs[UDP_BATCH];
    struct iovec iov[UDP_BATCH];
    int n_pending, next_pending;
    int busy;
    pthread_t busy_thread;
} udp_reader;

static void udp_release(void *arg)
{
    udp_reader *r = arg;
    recv_stream_decref(r->base.stream);
}

static void set_idle_locked(udp_reader *r)
{
    r->busy = 0;
    if (r->base.closed)
        pthread_cond_broadcast(&r->base.stream->idle_cond);
}

/* Returns 1 when the socket watch should be re-armed. */
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

    int rearm = 1, stop = 0;
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
                if (errno != EAGAIN && errno != EWOULDBLOCK) {
                    pthread_mutex_lock(&s->lock);
                    recv_stream_log_locked(s, SPEAD_LOG_WARNING, "UDP receive failed: %s",
                                           strerror(errno));
                    pthread_mutex_unlock(&s->lock);
                }
                break;
            }
            if (n == 0)
                break;
            r->n_pending = n;
            r->next_pending = 0;
        }
        int got = r->n_pending;
        pthread_mutex_lock(&s->lock);
        if (r->base.closed || s->stop_requested) {
            rearm = 0;
            set_idle_locked(r);
            pthread_mutex_unlock(&s->lock);
            return 0;
        }
        if (recv_stream_ring_full(s) && recv_stream_pause_if_full(s, &r->base)) {
            set_idle_locked(r);
            pthread_mutex_unlock(&s->lock);
            return 0;
        }
        size_t handled = 0;
        int paused = 0;
        while (r->next_pending < r->n_pending) {
            struct mmsghdr *m = &r->msgs[r->next_pending];
            const uint8_t *data = m->msg_hdr.msg_iov->iov_base;
            r->next_pending++;
            handled++;
            if ((m->msg_hdr.msg_flags & MSG_TRUNC) || m->msg_len > r->max_size) {
                s->stats.too_large_packets++;
                recv_stream_log_locked(s, SPEAD_LOG_INFO,
                                       "packet rejected: larger than max_size (%zu bytes)",
                                       r->max_size);
                continue;
            }
            spead_packet pkt;
            int st = spead_decode_packet(data, m->msg_len, &pkt);
            if (st != SPEAD_PACKET_OK) {
                s->stats.bad_packets++;
                recv_stream_log_locked(s, SPEAD_LOG_INFO, "packet rejected: %s",
                                       spead_packet_status_string(st));
                continue;
            }
            int res = recv_stream_add_packet_locked(s, &pkt);
            if (res == SPEAD_ADD_STOP) {
                stop = 1;
                break;
            }
            if (res == SPEAD_ADD_PAUSE && recv_stream_pause_if_full(s, &r->base)) {
                paused = 1;
                break;
            }
        }
        s->stats.batches++;
        if (handled > s->stats.max_batch)
            s->stats.max_batch = handled;
        if (stop || paused) {
            set_idle_locked(r);
            pthread_mutex_unlock(&s->lock);
            if (stop)
                recv_stream_stop(s);
            return 0;
        }
        pthread_mutex_unlock(&s->lock);
        if (got < UDP_BATCH)
            break; /* the socket is probably drained: wait for readiness */
    }
    pthread_mutex_lock(&s->lock);
    set_idle_locked(r);
    pthread_mutex_unlock(&s->lock);
    return rearm;
}

static int udp_ready(void *arg)
{
    return udp_process((udp_reader *) arg);
}

/* The pool can no longer watch the socket, so nothing would ever read it
 * again: end the stream rather than let its consumer wait for ever.  The
 * watch holds a stream reference until it is released, after this returns. */
static void udp_watch_failed(void *arg, int err)
{
    udp_reader *r = arg;
    recv_stream *s = r->base.stream;
    pthread_mutex_lock(&s->lock);
    recv_stream_log_locked(s, SPEAD_LOG_WARNING,
                           "UDP reader stopped: cannot watch its socket any more: %s",
                           strerror(err));
    pthread_mutex_unlock(&s->lock);
    recv_stream_stop(s);
}

static void udp_resume_task(void *arg)
{
    udp_reader *r = arg;
    if (udp_process(r))
        tpool_rearm(r->base.stream->tp, r->watch);
}

static void udp_resume(spead_reader *base)
{
    udp_reader *r = (udp_reader *) base;
    recv_stream_incref(base->stream);
    tpool_post(base->stream->tp, udp_resume_task, r, udp_release);
}

static void udp_close(spead_reader *base)
{
    udp_reader *r = (udp_reader *) base;
    recv_stream *s = base->stream;
    pthread_mutex_lock(&s->lock);
    base->closed = 1;
    while (r->busy && !pthread_equal(r->busy_thread, pthread_self()))
        pthread_cond_wait(&s->idle_cond, &s->lock);
    pthread_mutex_unlock(&s->lock);
    if (r->watch >= 0) {
        tpool_unwatch(s->tp, r->watch);
        r->watch = -1;
    }
    if (r->fd >= 0) {
        close(r->fd);
        r->fd = -1;
    }
}

static void udp_destroy(spead_reader *base)
{
    udp_reader *r = (udp_reader *) base;
    if (r->fd >= 0)
        close(r->fd);
    free(r->buffers);
    free(r);
}

int recv_add_udp_reader(recv_stream *s, int fd, size_t max_size)
{
    udp_reader *r = calloc(1, sizeof(*r));
    if (!r) {
        close(fd);
        return -ENOMEM;
    }
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
    r->base.resume = udp_resume;
    r->base.close = udp_close;
    r->base.destroy = udp_destroy;
    if (recv_stream_add_reader(s, &r->base) != 0)
        return -ESHUTDOWN;
    /* hold the lock so a fast first packet cannot race the handle store */
    pthread_mutex_lock(&s->lock);
    recv_stream_incref(s);
    int64_t h = tpool_watch(s->tp, fd, EPOLLIN, udp_ready, udp_watch_failed, r, udp_release);
    if (h < 0) {
        int e = errno;
        pthread_mutex_unlock(&s->lock);
        recv_stream_decref(s);
        return -e;
    }
    r->watch = h;
    pthread_mutex_unlock(&s->lock);
    return 0;
}
