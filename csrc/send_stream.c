#include "send_stream.h"

#include <errno.h>
#include <float.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    send_stream *s;
    int ran;
} drain_job;

send_req *send_req_new(size_t n_items)
{
    send_req *req = malloc(sizeof(send_req) + n_items * sizeof(send_item));
    if (!req)
        return NULL;
    memset(req, 0, sizeof(send_req));
    req->cnt = -1;
    req->n_items = n_items;
    return req;
}

void send_req_free(send_req *req)
{
    free(req);
}

send_stream *send_stream_new(const send_writer_ops *ops, void *writer, tpool_t *tp,
                             size_t max_packet_size, double rate, size_t burst_size,
                             size_t max_heaps)
{
    send_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->refs = 1;
    s->ops = ops;
    s->writer = writer;
    s->max_packet_size = max_packet_size;
    /* pacing arithmetic needs a finite rate: anything else means no limit */
    s->rate = rate > 0.0 && rate <= DBL_MAX ? rate : 0.0;
    s->burst_size = burst_size;
    s->max_heaps = max_heaps;
    s->tp = tp;
    if (tp)
        tpool_incref(tp);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->next_cnt = 1;
    s->notify_fd = -1;
    return s;
}

void send_stream_incref(send_stream *s)
{
    __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
}

void send_stream_decref(send_stream *s)
{
    if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    if (s->ops && s->ops->destroy)
        s->ops->destroy(s);
    send_req *r = s->done_head;
    while (r) {
        send_req *next = r->next;
        send_req_free(r);
        r = next;
    }
    if (s->notify_fd >= 0)
        close(s->notify_fd);
    if (s->tp)
        tpool_decref(s->tp);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s);
}

/* Lock held. */
static void assign_cnt(send_stream *s, send_req *req)
{
    if (req->cnt < 0) {
        uint64_t mask = (UINT64_C(1) << req->heap_address_bits) - 1;
        req->cnt = (int64_t) (s->next_cnt & mask);
        s->next_cnt++;
    }
}

/* Lock held. */
static void complete(send_stream *s, send_req *req, int error)
{
    req->error = error;
    req->done = 1;
    s->in_flight--;
    if (req->is_async) {
        req->next = NULL;
        if (s->done_tail)
            s->done_tail->next = req;
        else
            s->done_head = req;
        s->done_tail = req;
        if (s->notify_fd >= 0) {
            uint64_t one = 1;
            ssize_t w = write(s->notify_fd, &one, sizeof(one));
            (void) w;
        }
    }
    pthread_cond_broadcast(&s->cond);
}

/* Lock held. Fail everything still queued (no one can send it). */
static void fail_queued(send_stream *s, int error)
{
    while (s->head) {
        send_req *r = s->head;
        s->head = r->next;
        complete(s, r, error);
    }
    s->tail = NULL;
}

/* Lock held, sending role held. Send queued heaps in order until ``until``
 * has been sent, or a single heap if ``until`` is NULL. Returns locked. */
static void drain(send_stream *s, send_req *until)
{
    while (s->head) {
        send_req *r = s->head;
        s->head = r->next;
        if (!s->head)
            s->tail = NULL;
        pthread_mutex_unlock(&s->lock);
        int error = s->ops->write_heap(s, r);
        pthread_mutex_lock(&s->lock);
        complete(s, r, error);
        if (until == NULL || r == until)
            break;
    }
}

static void drain_task(void *arg);
static void drain_release(void *arg);

/* Lock NOT held, sending role held: give the role to a worker.  If that is
 * impossible, the release callback fails the queue and drops the role. */
static void post_drain(send_stream *s)
{
    drain_job *job = malloc(sizeof(*job));
    if (!job) {
        pthread_mutex_lock(&s->lock);
        fail_queued(s, ENOMEM);
        s->draining = 0;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        return;
    }
    job->s = s;
    job->ran = 0;
    send_stream_incref(s);
    tpool_post(s->tp, drain_task, job, drain_release);
}

/* Lock held, sending role held: hand the role on if work remains, else drop
 * it.  Returns unlocked. */
static void release_role(send_stream *s)
{
    if (s->head && s->tp) {
        pthread_mutex_unlock(&s->lock);
        post_drain(s);
        return;
    }
    fail_queued(s, ESHUTDOWN);
    s->draining = 0;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static void drain_task(void *arg)
{
    drain_job *job = arg;
    send_stream *s = job->s;
    job->ran = 1;
    pthread_mutex_lock(&s->lock);
    /* One heap per task, so that streams sharing a worker take turns. */
    drain(s, NULL);
    release_role(s);
}

static void drain_release(void *arg)
{
    drain_job *job = arg;
    send_stream *s = job->s;
    if (!job->ran) {
        pthread_mutex_lock(&s->lock);
        fail_queued(s, ESHUTDOWN);
        s->draining = 0;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
    }
    free(job);
    send_stream_decref(s);
}

/* Take the lock and append req to the queue. Returns 0 with the lock still
 * held, or EBUSY (lock released) when max_heaps are in flight. */
static int lock_and_enqueue(send_stream *s, send_req *req, int is_async)
{
    req->is_async = is_async;
    req->done = 0;
    req->next = NULL;
    pthread_mutex_lock(&s->lock);
    if (s->in_flight >= s->max_heaps) {
        pthread_mutex_unlock(&s->lock);
        return EBUSY;
    }
    assign_cnt(s, req);
    s->in_flight++;
    if (s->tail)
        s->tail->next = req;
    else
        s->head = req;
    s->tail = req;
    return 0;
}

int send_stream_send_sync(send_stream *s, send_req *req)
{
    if (lock_and_enqueue(s, req, 0) != 0)
        return EBUSY;
    if (!s->draining) {
        /* Nobody is sending, so the queue was empty: send it ourselves. */
        s->draining = 1;
        drain(s, req);
        release_role(s);
        return 0;
    }
    while (!req->done)
        pthread_cond_wait(&s->cond, &s->lock);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

int send_stream_send_async(send_stream *s, send_req *req)
{
    if (!s->tp || tpool_is_stopped(s->tp))
        return ESHUTDOWN;
    if (lock_and_enqueue(s, req, 1) != 0)
        return EBUSY;
    if (!s->draining) {
        s->draining = 1;
        pthread_mutex_unlock(&s->lock);
        post_drain(s);
    } else {
        pthread_mutex_unlock(&s->lock);
    }
    return 0;
}

void send_stream_flush(send_stream *s)
{
    pthread_mutex_lock(&s->lock);
    while (s->in_flight > 0 || s->draining)
        pthread_cond_wait(&s->cond, &s->lock);
    pthread_mutex_unlock(&s->lock);
}

void send_stream_lock_idle(send_stream *s)
{
    pthread_mutex_lock(&s->lock);
    while (s->draining)
        pthread_cond_wait(&s->cond, &s->lock);
}

void send_stream_unlock(send_stream *s)
{
    pthread_mutex_unlock(&s->lock);
}

int send_stream_enable_notify(send_stream *s)
{
    pthread_mutex_lock(&s->lock);
    if (s->notify_fd < 0) {
        s->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (s->notify_fd >= 0 && s->done_head) {
            uint64_t one = 1;
            ssize_t w = write(s->notify_fd, &one, sizeof(one));
            (void) w;
        }
    }
    int fd = s->notify_fd;
    pthread_mutex_unlock(&s->lock);
    return fd;
}

send_req *send_stream_pop_done(send_stream *s)
{
    pthread_mutex_lock(&s->lock);
    if (s->notify_fd >= 0) {
        uint64_t v;
        ssize_t r = read(s->notify_fd, &v, sizeof(v));
        (void) r;
    }
    send_req *head = s->done_head;
    s->done_head = s->done_tail = NULL;
    pthread_mutex_unlock(&s->lock);
    return head;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Longest single sleep while pacing (a year): a tiny rate can ask for a wait
 * of any length, even an infinite one, and this keeps every deadline within
 * int64_t nanoseconds; the loop in send_stream_pace sleeps again if needed. */
#define PACE_MAX_SLEEP_NS ((int64_t) 365 * 24 * 3600 * 1000000000)

/* Pay off the debt for the time since it was last brought up to date. */
static void pace_catch_up(send_stream *s, int64_t now)
{
    if (now > s->debt_ns) {
        s->debt -= (double) (now - s->debt_ns) * 1e-9 * s->rate;
        if (s->debt < 0.0)
            s->debt = 0.0;
    }
    s->debt_ns = now;
}

void send_stream_pace(send_stream *s, size_t bytes)
{
    if (s->rate <= 0.0)
        return;
    /* Generic cell rate algorithm, counted in bytes: up to burst_size bytes
     * may run ahead of the ideal schedule; beyond that, wait for it to catch
     * up.  Only doubles are involved until a wait is turned into a
     * deadline, which is bounded first, so no rate or burst size overflows
     * a conversion. */
    int64_t now = now_ns();
    for (;;) {
        pace_catch_up(s, now);
        double excess = s->debt - (double) s->burst_size;
        if (excess <= 0.0)
            break;
        double wait_ns = excess / s->rate * 1e9;   /* may be +inf */
        int64_t step = wait_ns < (double) PACE_MAX_SLEEP_NS ? (int64_t) wait_ns + 1
                                                            : PACE_MAX_SLEEP_NS;
        int64_t deadline = now + step;
        struct timespec ts;
        ts.tv_sec = deadline / 1000000000;
        ts.tv_nsec = deadline % 1000000000;
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
        now = now_ns();
    }
    s->debt += (double) bytes;
}
