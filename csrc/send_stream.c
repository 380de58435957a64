#include "send_stream.h"

#include <errno.h>
#include <float.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    send_stream *s;
    int ran;
} drain_job;

/* Offsets within a request's allocation, kept aligned for any member. */
static size_t align_up(size_t n)
{
    const size_t a = _Alignof(max_align_t);
    return (n + a - 1) & ~(a - 1);
}

send_req *send_req_new(size_t n_heaps, size_t n_items)
{
    if (n_items > SIZE_MAX / 2 / sizeof(send_item) || n_heaps > SIZE_MAX / 2 / 512)
        return NULL;
    size_t heaps_at = align_up(sizeof(send_req) + n_items * sizeof(send_item));
    size_t pz_at = align_up(heaps_at + n_heaps * sizeof(send_heap_spec));
    size_t active_at = align_up(pz_at + n_heaps * sizeof(send_packetizer));
    size_t total = active_at + n_heaps * sizeof(size_t);
    uint8_t *mem = malloc(total);
    if (!mem)
        return NULL;
    send_req *req = (send_req *) mem;
    memset(req, 0, sizeof(send_req));
    req->n_heaps = n_heaps;
    req->heaps = (send_heap_spec *) (mem + heaps_at);
    req->pz = (send_packetizer *) (mem + pz_at);
    req->active = (size_t *) (mem + active_at);
    return req;
}

void send_req_free(send_req *req)
{
    free(req);
}

uint64_t send_req_start(send_req *req, send_group_iter *g)
{
    uint64_t packets = 0;
    for (size_t i = 0; i < req->n_heaps; i++) {
        const send_heap_spec *h = &req->heaps[i];
        send_packetizer_start(&req->pz[i], h->items, &h->layout, (uint64_t) h->cnt);
        packets += h->layout.n_packets;
    }
    send_group_init(g, req->pz, req->active, req->n_heaps, req->mode);
    return packets;
}

static double mono_clock(void *ctx)
{
    (void) ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

/* Longest single sleep while pacing (a year): a tiny rate can ask for a wait
 * of any length, even an infinite one, and this keeps every deadline a
 * representable timespec; the loop sleeps again if needed. */
#define PACE_MAX_SLEEP 31536000.0

/* Timer slack for pacing sleeps: a thread's default (50 us) lets a sleep end
 * that late, which at high rates costs more than the bursts themselves. */
#define PACE_TIMER_SLACK_NS 1000UL
/* Bounds of how early a pacing sleep aims to end, to make up for the time the
 * kernel takes to wake the thread. */
#define PACE_LEAD_MAX 100e-6
/* Waits shorter than this are not slept: the sender goes on, a little ahead
 * of its schedule, and sleeps once the lead has grown past it. Each sleep and
 * wake-up costs several microseconds of CPU, which at gigabytes per second
 * (a 64 KiB burst every 20 to 30 us) came to a fifth of the sender's time. */
#define PACE_MIN_SLEEP 100e-6

/* How early this thread's pacing sleeps aim to end: learnt from how late the
 * past ones ended, so that bursts start on time on average. */
static __thread double pace_lead;

static void mono_sleep_until(void *ctx, double t)
{
    double now = mono_clock(ctx);
    if (!(now + PACE_MIN_SLEEP < t))
        return;
    /* the calling thread's own slack comes back once the wait is over */
    int old_slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
    int tighten = old_slack > (int) PACE_TIMER_SLACK_NS;
    if (tighten)
        prctl(PR_SET_TIMERSLACK, PACE_TIMER_SLACK_NS, 0, 0, 0);
    double wake = t - pace_lead;
    while (now < wake) {
        double deadline = wake - now > PACE_MAX_SLEEP ? now + PACE_MAX_SLEEP : wake;
        struct timespec ts;
        ts.tv_sec = (time_t) deadline;
        long nsec = (long) ((deadline - (double) ts.tv_sec) * 1e9) + 1;
        if (nsec >= 1000000000L) {
            ts.tv_sec++;
            nsec -= 1000000000L;
        }
        ts.tv_nsec = nsec;
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
        now = mono_clock(ctx);
    }
    if (tighten)
        prctl(PR_SET_TIMERSLACK, (unsigned long) old_slack, 0, 0, 0);
    /* late > 0: the thread woke after t; move the aim by a quarter of it */
    double lead = pace_lead + 0.25 * (now - t);
    pace_lead = lead < 0.0 ? 0.0 : lead > PACE_LEAD_MAX ? PACE_LEAD_MAX : lead;
}

send_stream *send_stream_new(const send_writer_ops *ops, void *writer, tpool_t *tp,
                             const send_config *config, size_t num_substreams)
{
    send_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->refs = 1;
    s->ops = ops;
    s->writer = writer;
    s->config = *config;
    /* pacing arithmetic needs a finite rate: anything else means no limit */
    if (!(s->config.rate > 0.0 && s->config.rate <= DBL_MAX))
        s->config.rate = 0.0;
    if (!(s->config.burst_rate_ratio >= 1.0 && s->config.burst_rate_ratio <= DBL_MAX))
        s->config.burst_rate_ratio = 1.0;
    s->num_substreams = num_substreams ? num_substreams : 1;
    s->tp = tp;
    if (tp)
        tpool_incref(tp);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->next_cnt = 1;
    s->cnt_step = 1;
    s->notify_fd = -1;
    send_stream_set_clock(s, NULL, NULL, NULL);
    return s;
}

void send_stream_set_clock(send_stream *s, double (*clock)(void *ctx),
                           void (*sleep_until)(void *ctx, double t), void *ctx)
{
    s->clock = clock ? clock : mono_clock;
    s->sleep_until = sleep_until ? sleep_until : mono_sleep_until;
    s->clock_ctx = ctx;
    /* A new stream may send its first burst now. */
    s->send_time = s->send_time_burst = s->clock(s->clock_ctx);
    s->rate_wait = 0.0;
    s->rate_bytes = 0;
}

void send_stream_set_cnt_sequence(send_stream *s, uint64_t next, uint64_t step)
{
    pthread_mutex_lock(&s->lock);
    s->next_cnt = next;
    s->cnt_step = step;
    pthread_mutex_unlock(&s->lock);
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

/* Lock held.  Automatic cnts go to the group's heaps in list order. */
static void assign_cnts(send_stream *s, send_req *req)
{
    for (size_t i = 0; i < req->n_heaps; i++) {
        send_heap_spec *h = &req->heaps[i];
        if (h->cnt < 0) {
            uint64_t mask = (UINT64_C(1) << h->layout.heap_address_bits) - 1;
            h->cnt = (int64_t) (s->next_cnt & mask);
            s->next_cnt += s->cnt_step;
        }
    }
}

/* Lock held. */
static void complete(send_stream *s, send_req *req, int error)
{
    req->error = error;
    req->done = 1;
    s->in_flight -= req->n_heaps;
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

/* Sending role held: nothing is queued, so the stream is about to be idle.
 * As the reference does, keep send_time no further behind than makes the
 * next packet due now, so that idle time is not saved up as a burst. */
static void pace_idle(send_stream *s)
{
    double back = s->clock(s->clock_ctx) - s->rate_wait;
    if (s->send_time < back)
        s->send_time = back;
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
        int error = s->ops->write_group(s, r);
        if (!error) {
            r->bytes = 0;
            for (size_t i = 0; i < r->n_heaps; i++)
                r->bytes += r->heaps[i].layout.total_bytes;
        }
        pthread_mutex_lock(&s->lock);
        if (!s->head)
            pace_idle(s);
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
 * held, or EAGAIN (lock released) when its heaps do not fit beside those
 * in flight: a group is queued whole or not at all. */
static int lock_and_enqueue(send_stream *s, send_req *req, int is_async)
{
    req->is_async = is_async;
    req->done = 0;
    req->next = NULL;
    pthread_mutex_lock(&s->lock);
    if (req->n_heaps > s->config.max_heaps - s->in_flight) {
        pthread_mutex_unlock(&s->lock);
        return EAGAIN;
    }
    assign_cnts(s, req);
    s->in_flight += req->n_heaps;
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
        return EAGAIN;
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
        return EAGAIN;
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

void send_stream_pace_wait(send_stream *s)
{
    /* The reference's update_send_times: the burst just sent is worth
     * rate_wait seconds at the heaps' rates and rate_wait / burst_rate_ratio
     * at the burst rate; the next burst waits for both. */
    double now = s->clock(s->clock_ctx);
    s->send_time_burst += s->rate_wait / s->config.burst_rate_ratio;
    s->send_time += s->rate_wait;
    s->rate_bytes = 0;
    s->rate_wait = 0.0;
    double target = s->send_time_burst > s->send_time ? s->send_time_burst : s->send_time;
    /* send_time_burst then says when the next burst actually starts */
    s->send_time_burst = now > target ? now : target;
    if (now < target)
        s->sleep_until(s->clock_ctx, target);
}
