#include "tpool.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define WAKE_TOKEN UINT64_MAX

enum slot_state { SLOT_FREE, SLOT_ARMED, SLOT_IDLE, SLOT_RUNNING };

typedef struct {
    uint32_t gen;
    int state;
    int fd;
    uint32_t events;
    int cancelled;
    int rearm_requested;
    int failed;            /* re-arming failed: never armed again */
    pthread_t runner;
    tpool_watch_fn fn;
    tpool_fail_fn fail;
    void *arg;
    tpool_release_fn release;
    int next_free;
} watch_slot;

typedef struct task {
    struct task *next;
    tpool_task_fn fn;
    void *arg;
    tpool_release_fn release;
} task;

typedef struct stop_hook {
    tpool_hold_fn hold;
    tpool_task_fn fire;
    void *arg;
    int fired;
    struct stop_hook *prev, *next;
} stop_hook;

struct tpool {
    /* Two counts, so that the struct outlives everyone who may touch it.
     * ``refs`` counts the owners (tpool_incref/decref); when it drops to 0
     * the pool stops.  ``holds`` counts who may still use the memory: one
     * share for the owners together, plus one per worker thread that has
     * not yet left worker_main.  A worker can stop its own pool (it is then
     * detached, not joined) and drop the last owner reference, and it still
     * has to get out of its loop: whoever lets go last frees the struct. */
    int refs;
    int holds;
    pthread_mutex_t hook_lock;
    stop_hook *hooks;
    pthread_mutex_t lock;
    pthread_cond_t cond;   /* signalled when a running watch finishes */
    int epfd;
    int wakefd;
    int stopping;
    int joined;
    int nthreads;
    pthread_t *threads;
    int *affinity;
    int n_affinity;
    task *head, *tail;
    watch_slot *slots;
    int n_slots;
    int free_slot;
};

typedef struct {
    tpool_t *tp;
    int index;
} worker_arg;

static uint64_t slot_token(int idx, uint32_t gen)
{
    return ((uint64_t) gen << 32) | (uint32_t) idx;
}

/* Lock held. Put slot idx back on the free list. */
static void free_slot_locked(tpool_t *tp, int idx)
{
    watch_slot *s = &tp->slots[idx];
    s->state = SLOT_FREE;
    s->gen++;
    s->next_free = tp->free_slot;
    tp->free_slot = idx;
}

/* Lock held. Arm slot idx's one-shot registration again.  Returns 0, or the
 * errno of the failed EPOLL_CTL_MOD (the slot is then left as it was): the
 * fd number may no longer name the file that was registered. */
static int rearm_locked(tpool_t *tp, int idx)
{
    watch_slot *s = &tp->slots[idx];
    struct epoll_event ev;
    ev.events = s->events | EPOLLONESHOT;
    ev.data.u64 = slot_token(idx, s->gen);
    if (epoll_ctl(tp->epfd, EPOLL_CTL_MOD, s->fd, &ev) < 0)
        return errno;
    s->state = SLOT_ARMED;
    s->rearm_requested = 0;
    return 0;
}

/* Lock held, slot idx RUNNING on this thread, ``err`` from rearm_locked:
 * the pool can no longer watch the fd.  The slot is marked failed, so it is
 * never armed again, and stays RUNNING while ``fail`` runs without the
 * lock, so that nothing releases its arg meanwhile (tpool_unwatch from
 * another thread waits; from inside ``fail`` it leaves the release to
 * end_run_locked).  Returns with the lock held. */
static void fail_locked(tpool_t *tp, int idx, int err)
{
    watch_slot *s = &tp->slots[idx];
    s->failed = 1;
    tpool_fail_fn fail = s->fail;
    void *arg = s->arg;
    if (!fail)
        return;
    pthread_mutex_unlock(&tp->lock);
    fail(arg, err);
    pthread_mutex_lock(&tp->lock);
}

/* Lock held; this thread's run of slot idx is over (the slot is RUNNING, or
 * ARMED by this thread just now).  A slot cancelled meanwhile is freed and
 * its release callback returned, to be called without the lock; otherwise a
 * slot that was not armed again goes idle. */
static tpool_release_fn end_run_locked(tpool_t *tp, int idx)
{
    watch_slot *s = &tp->slots[idx];
    if (s->cancelled) {
        tpool_release_fn release = s->release;
        free_slot_locked(tp, idx);
        pthread_cond_broadcast(&tp->cond);
        return release;
    }
    if (s->state == SLOT_RUNNING)
        s->state = SLOT_IDLE;
    return NULL;
}

static void dispatch_watch(tpool_t *tp, uint64_t token)
{
    int idx = (int) (token & 0xffffffffu);
    uint32_t gen = (uint32_t) (token >> 32);
    pthread_mutex_lock(&tp->lock);
    if (idx >= tp->n_slots || tp->slots[idx].gen != gen || tp->slots[idx].state != SLOT_ARMED
        || tp->slots[idx].cancelled) {
        pthread_mutex_unlock(&tp->lock);
        return;
    }
    watch_slot *s = &tp->slots[idx];
    s->state = SLOT_RUNNING;
    s->runner = pthread_self();
    tpool_watch_fn fn = s->fn;
    void *arg = s->arg;
    pthread_mutex_unlock(&tp->lock);

    int rearm = fn(arg);

    pthread_mutex_lock(&tp->lock);
    s = &tp->slots[idx];   /* the slot array may have moved */
    if (!s->cancelled && (rearm || s->rearm_requested) && !tp->stopping) {
        int err = rearm_locked(tp, idx);
        if (err)
            fail_locked(tp, idx, err);
    }
    tpool_release_fn release = end_run_locked(tp, idx);
    pthread_mutex_unlock(&tp->lock);
    if (release)
        release(arg);
}

static void release_hold(tpool_t *tp);

static void *worker_main(void *p)
{
    worker_arg wa = *(worker_arg *) p;
    free(p);
    tpool_t *tp = wa.tp;
    pthread_setname_np(pthread_self(), "spead2-worker");
    if (tp->n_affinity > 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(tp->affinity[wa.index % tp->n_affinity], &set);
        pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    }
    for (;;) {
        pthread_mutex_lock(&tp->lock);
        if (tp->stopping) {
            pthread_mutex_unlock(&tp->lock);
            break;
        }
        task *t = tp->head;
        if (t) {
            tp->head = t->next;
            if (!tp->head)
                tp->tail = NULL;
            pthread_mutex_unlock(&tp->lock);
            t->fn(t->arg);
            if (t->release)
                t->release(t->arg);
            free(t);
            continue;
        }
        pthread_mutex_unlock(&tp->lock);

        struct epoll_event ev;
        int n = epoll_wait(tp->epfd, &ev, 1, -1);
        if (n <= 0)
            continue;
        if (ev.data.u64 == WAKE_TOKEN) {
            uint64_t v;
            ssize_t r = read(tp->wakefd, &v, sizeof(v));
            (void) r;
            continue;
        }
        dispatch_watch(tp, ev.data.u64);
    }
    /* the last use of tp by this thread */
    release_hold(tp);
    return NULL;
}

tpool_t *tpool_create(int nthreads, const int *affinity, int n_affinity, char *err, size_t errlen)
{
    if (nthreads < 1) {
        snprintf(err, errlen, "at least one thread is required");
        return NULL;
    }
    tpool_t *tp = calloc(1, sizeof(*tp));
    if (!tp) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    tp->refs = 1;
    tp->holds = 1;
    tp->free_slot = -1;
    pthread_mutex_init(&tp->hook_lock, NULL);
    pthread_mutex_init(&tp->lock, NULL);
    pthread_cond_init(&tp->cond, NULL);
    tp->epfd = epoll_create1(EPOLL_CLOEXEC);
    tp->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK | EFD_SEMAPHORE);
    if (tp->epfd < 0 || tp->wakefd < 0) {
        snprintf(err, errlen, "cannot create event loop: %s", strerror(errno));
        goto fail;
    }
    struct epoll_event ev;
    ev.events = EPOLLIN;
    ev.data.u64 = WAKE_TOKEN;
    if (epoll_ctl(tp->epfd, EPOLL_CTL_ADD, tp->wakefd, &ev) < 0) {
        snprintf(err, errlen, "cannot create event loop: %s", strerror(errno));
        goto fail;
    }
    if (n_affinity > 0) {
        tp->affinity = malloc(sizeof(int) * n_affinity);
        if (!tp->affinity) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        memcpy(tp->affinity, affinity, sizeof(int) * n_affinity);
        tp->n_affinity = n_affinity;
    }
    tp->threads = calloc(nthreads, sizeof(pthread_t));
    if (!tp->threads) {
        snprintf(err, errlen, "out of memory for %d threads", nthreads);
        goto fail;
    }
    for (int i = 0; i < nthreads; i++) {
        worker_arg *wa = malloc(sizeof(*wa));
        if (!wa) {
            snprintf(err, errlen, "out of memory");
            tp->nthreads = i;
            tpool_stop(tp);
            tpool_decref(tp);
            return NULL;
        }
        wa->tp = tp;
        wa->index = i;
        /* taken before the thread exists, so that it cannot be released
         * before it was taken */
        __atomic_add_fetch(&tp->holds, 1, __ATOMIC_RELAXED);
        int rc = pthread_create(&tp->threads[i], NULL, worker_main, wa);
        if (rc != 0) {
            __atomic_sub_fetch(&tp->holds, 1, __ATOMIC_RELAXED);
            free(wa);
            snprintf(err, errlen, "cannot start thread: %s", strerror(rc));
            tp->nthreads = i;
            tpool_stop(tp);
            tpool_decref(tp);
            return NULL;
        }
        tp->nthreads = i + 1;
    }
    return tp;
fail:
    if (tp->epfd >= 0)
        close(tp->epfd);
    if (tp->wakefd >= 0)
        close(tp->wakefd);
    free(tp->affinity);
    free(tp);
    return NULL;
}

void tpool_incref(tpool_t *tp)
{
    __atomic_add_fetch(&tp->refs, 1, __ATOMIC_RELAXED);
}

static void run_stop_hooks(tpool_t *tp)
{
    /* one hook at a time, so that firing needs no allocation and a hook
     * removed meanwhile is never touched */
    for (;;) {
        tpool_task_fn fire = NULL;
        void *arg = NULL;
        pthread_mutex_lock(&tp->hook_lock);
        for (stop_hook *h = tp->hooks; h; h = h->next) {
            if (h->fired)
                continue;
            h->fired = 1;
            if (h->hold(h->arg)) {
                fire = h->fire;
                arg = h->arg;
                break;
            }
        }
        pthread_mutex_unlock(&tp->hook_lock);
        if (!fire)
            return;
        fire(arg);
    }
}

void *tpool_add_stop_hook(tpool_t *tp, tpool_hold_fn hold, tpool_task_fn fire, void *arg)
{
    stop_hook *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->hold = hold;
    h->fire = fire;
    h->arg = arg;
    pthread_mutex_lock(&tp->hook_lock);
    h->next = tp->hooks;
    if (tp->hooks)
        tp->hooks->prev = h;
    tp->hooks = h;
    pthread_mutex_unlock(&tp->hook_lock);
    return h;
}

void tpool_remove_stop_hook(tpool_t *tp, void *handle)
{
    stop_hook *h = handle;
    if (!h)
        return;
    pthread_mutex_lock(&tp->hook_lock);
    if (h->prev)
        h->prev->next = h->next;
    else
        tp->hooks = h->next;
    if (h->next)
        h->next->prev = h->prev;
    pthread_mutex_unlock(&tp->hook_lock);
    free(h);
}

void tpool_stop(tpool_t *tp)
{
    pthread_mutex_lock(&tp->lock);
    if (tp->joined) {
        pthread_mutex_unlock(&tp->lock);
        return;
    }
    tp->stopping = 1;
    tp->joined = 1;
    task *t = tp->head;
    tp->head = tp->tail = NULL;
    uint64_t n = (uint64_t) tp->nthreads;
    ssize_t r = write(tp->wakefd, &n, sizeof(n));
    (void) r;
    pthread_mutex_unlock(&tp->lock);
    /* the hooks end the streams before the workers are joined: a chunk
     * stream's worker may be waiting for a free chunk or for room in the
     * data ring, which only stopping the stream (its rings) ends */
    run_stop_hooks(tp);
    pthread_t self = pthread_self();
    for (int i = 0; i < tp->nthreads; i++) {
        if (pthread_equal(tp->threads[i], self))
            pthread_detach(self);
        else
            pthread_join(tp->threads[i], NULL);
    }
    while (t) {
        task *next = t->next;
        if (t->release)
            t->release(t->arg);
        free(t);
        t = next;
    }
    run_stop_hooks(tp);
}

void tpool_decref(tpool_t *tp)
{
    if (__atomic_sub_fetch(&tp->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    tpool_stop(tp);
    release_hold(tp);
}

static void release_hold(tpool_t *tp)
{
    if (__atomic_sub_fetch(&tp->holds, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    close(tp->epfd);
    close(tp->wakefd);
    pthread_mutex_destroy(&tp->hook_lock);
    pthread_mutex_destroy(&tp->lock);
    pthread_cond_destroy(&tp->cond);
    free(tp->slots);
    free(tp->threads);
    free(tp->affinity);
    free(tp);
}

int tpool_num_threads(const tpool_t *tp)
{
    return tp->nthreads;
}

int tpool_is_stopped(tpool_t *tp)
{
    pthread_mutex_lock(&tp->lock);
    int s = tp->stopping;
    pthread_mutex_unlock(&tp->lock);
    return s;
}

int tpool_in_worker(tpool_t *tp)
{
    pthread_t self = pthread_self();
    for (int i = 0; i < tp->nthreads; i++)
        if (pthread_equal(tp->threads[i], self))
            return 1;
    return 0;
}

int tpool_post(tpool_t *tp, tpool_task_fn fn, void *arg, tpool_release_fn release)
{
    task *t = malloc(sizeof(*t));
    if (!t) {
        if (release)
            release(arg);
        return -1;
    }
    t->next = NULL;
    t->fn = fn;
    t->arg = arg;
    t->release = release;
    pthread_mutex_lock(&tp->lock);
    if (tp->stopping) {
        pthread_mutex_unlock(&tp->lock);
        free(t);
        if (release)
            release(arg);
        return -1;
    }
    if (tp->tail)
        tp->tail->next = t;
    else
        tp->head = t;
    tp->tail = t;
    uint64_t one = 1;
    ssize_t r = write(tp->wakefd, &one, sizeof(one));
    (void) r;
    pthread_mutex_unlock(&tp->lock);
    return 0;
}

int64_t tpool_watch(tpool_t *tp, int fd, uint32_t events, tpool_watch_fn fn, tpool_fail_fn fail,
                    void *arg, tpool_release_fn release)
{
    pthread_mutex_lock(&tp->lock);
    if (tp->stopping) {
        pthread_mutex_unlock(&tp->lock);
        errno = ESHUTDOWN;
        return -1;
    }
    int idx = tp->free_slot;
    if (idx >= 0) {
        tp->free_slot = tp->slots[idx].next_free;
    } else {
        int n = tp->n_slots ? tp->n_slots * 2 : 8;
        watch_slot *ns = realloc(tp->slots, n * sizeof(*ns));
        if (!ns) {
            pthread_mutex_unlock(&tp->lock);
            errno = ENOMEM;
            return -1;
        }
        memset(ns + tp->n_slots, 0, (n - tp->n_slots) * sizeof(*ns));
        tp->slots = ns;
        /* chain the new slots (except the one taken now) onto the free list */
        for (int i = n - 1; i > tp->n_slots; i--) {
            tp->slots[i].next_free = tp->free_slot;
            tp->free_slot = i;
        }
        idx = tp->n_slots;
        tp->n_slots = n;
    }
    watch_slot *s = &tp->slots[idx];
    s->state = SLOT_ARMED;
    s->fd = fd;
    s->events = events;
    s->cancelled = 0;
    s->rearm_requested = 0;
    s->failed = 0;
    s->fn = fn;
    s->fail = fail;
    s->arg = arg;
    s->release = release;
    struct epoll_event ev;
    ev.events = events | EPOLLONESHOT;
    ev.data.u64 = slot_token(idx, s->gen);
    if (epoll_ctl(tp->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int e = errno;
        free_slot_locked(tp, idx);
        pthread_mutex_unlock(&tp->lock);
        errno = e;
        return -1;
    }
    int64_t handle = (int64_t) slot_token(idx, s->gen);
    pthread_mutex_unlock(&tp->lock);
    return handle;
}

static watch_slot *find_slot(tpool_t *tp, int64_t handle)
{
    int idx = (int) ((uint64_t) handle & 0xffffffffu);
    uint32_t gen = (uint32_t) ((uint64_t) handle >> 32);
    if (handle < 0 || idx >= tp->n_slots)
        return NULL;
    watch_slot *s = &tp->slots[idx];
    if (s->gen != gen || s->state == SLOT_FREE)
        return NULL;
    return s;
}

void tpool_rearm(tpool_t *tp, int64_t handle)
{
    tpool_release_fn release = NULL;
    void *arg = NULL;
    pthread_mutex_lock(&tp->lock);
    watch_slot *s = find_slot(tp, handle);
    if (s && !s->cancelled && !s->failed && !tp->stopping) {
        int idx = (int) (s - tp->slots);
        if (s->state == SLOT_IDLE) {
            int err = rearm_locked(tp, idx);
            if (err) {
                /* report it as a run of the watch on this thread, so that
                 * the slot is held the same way while ``fail`` runs */
                s->state = SLOT_RUNNING;
                s->runner = pthread_self();
                arg = s->arg;
                fail_locked(tp, idx, err);
                release = end_run_locked(tp, idx);
            }
        } else if (s->state == SLOT_RUNNING) {
            s->rearm_requested = 1;
        }
    }
    pthread_mutex_unlock(&tp->lock);
    if (release)
        release(arg);
}

void tpool_unwatch(tpool_t *tp, int64_t handle)
{
    tpool_release_fn release = NULL;
    void *arg = NULL;
    pthread_mutex_lock(&tp->lock);
    watch_slot *s = find_slot(tp, handle);
    if (!s || s->cancelled) {
        pthread_mutex_unlock(&tp->lock);
        return;
    }
    int idx = (int) (s - tp->slots);
    epoll_ctl(tp->epfd, EPOLL_CTL_DEL, s->fd, NULL);
    s->cancelled = 1;
    if (s->state == SLOT_RUNNING) {
        if (pthread_equal(s->runner, pthread_self())) {
            /* the running callback frees the slot when it returns */
            pthread_mutex_unlock(&tp->lock);
            return;
        }
        uint32_t gen = s->gen;
        while (tp->slots[idx].gen == gen)
            pthread_cond_wait(&tp->cond, &tp->lock);
        pthread_mutex_unlock(&tp->lock);
        return;
    }
    release = s->release;
    arg = s->arg;
    free_slot_locked(tp, idx);
    pthread_mutex_unlock(&tp->lock);
    if (release)
        release(arg);
}
