#include "chunk_group.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "chunk_window.h"
#include "deadline.h"
#include "recv_stream.h"

/* How often a member waiting for the group looks again at members it could
 * not lock (they release chunks themselves at the end of their batch). */
#define GROUP_RETRY_MS 5

typedef struct group_member {
    spead_chunk_group *group;
    size_t index;
    recv_stream *stream;         /* group lock; NULL once the stream is gone */
    uint64_t head;               /* group lock: the member window's head */
} group_member;

struct spead_chunk_group {
    int refs;
    pthread_mutex_t lock;
    pthread_cond_t head_moved;   /* the group's window head advanced, or the group stopped */
    int lossless;
    int stopped;
    int received;                /* a member has asked for a chunk: no more members */
    spead_chunk_window window;
    spead_chunk_window_ops window_ops;
    spead_chunk_ring *data, *free;
    group_member **members;
    size_t n_members, cap_members;
    uint64_t flush_target;       /* LOSSY: members must release chunks below this */
    spead_chunk *released;       /* chunks a stopped data ring refused */
};

/* ---- the group's window: chunks from the free ring, to the data ring ---- */

static spead_chunk *group_allocate(void *ctx, int64_t chunk_id)
{
    spead_chunk_group *g = ctx;
    spead_chunk *c = NULL;
    (void) chunk_id;
    if (spead_chunk_ring_get(g->free, &c, -1) != 1)
        return NULL;
    return c;
}

/* Group lock held. */
static void group_ready(void *ctx, spead_chunk *c)
{
    spead_chunk_group *g = ctx;
    if (spead_chunk_ring_put(g->data, c, -1) != 0) {
        c->next = g->released;
        g->released = c;
    }
}

spead_chunk_group *spead_chunk_group_new(size_t max_chunks, int eviction_mode,
                                         spead_chunk_ring *data, spead_chunk_ring *free_ring)
{
    spead_chunk_group *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    if (max_chunks == 0 || spead_chunk_window_init(&g->window, max_chunks) != 0) {
        free(g);
        return NULL;
    }
    g->refs = 1;
    g->lossless = eviction_mode == SPEAD_EVICT_LOSSLESS;
    pthread_mutex_init(&g->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g->head_moved, &ca);
    pthread_condattr_destroy(&ca);
    g->window_ops.allocate = group_allocate;
    g->window_ops.ready = group_ready;
    g->window_ops.head_updated = NULL;
    g->window_ops.ctx = g;
    spead_chunk_ring_incref(data);
    spead_chunk_ring_incref(free_ring);
    g->data = data;
    g->free = free_ring;
    return g;
}

void spead_chunk_group_incref(spead_chunk_group *g)
{
    __atomic_add_fetch(&g->refs, 1, __ATOMIC_RELAXED);
}

void spead_chunk_group_decref(spead_chunk_group *g)
{
    if (__atomic_sub_fetch(&g->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    for (size_t i = 0; i < g->n_members; i++)
        free(g->members[i]);
    free(g->members);
    spead_chunk_window_destroy(&g->window);
    spead_chunk_ring_decref(g->data);
    spead_chunk_ring_decref(g->free);
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->head_moved);
    free(g);
}

/* Group lock held: the group's head follows the slowest member. */
static void advance_group(spead_chunk_group *g)
{
    uint64_t min_head = UINT64_MAX;
    for (size_t i = 0; i < g->n_members; i++)
        if (g->members[i]->head < min_head)
            min_head = g->members[i]->head;
    if (min_head > g->window.head) {
        spead_chunk_window_flush_until(&g->window, min_head, &g->window_ops);
        pthread_cond_broadcast(&g->head_moved);
    }
}

/* ---- a member's manager ---- */

/* Release this member's chunks below ``target``, if it lags. The member's
 * stream lock must be held. */
static void member_catch_up(group_member *m, uint64_t target)
{
    recv_stream *s = m->stream;
    if (s && s->chunker && s->chunker->window.head < target)
        spead_chunker_flush_until(s->chunker, target);
}

/* With the member's stream lock held, so other members' locks may only be
 * tried, never waited for. */
static spead_chunk *member_allocate(void *ctx, int64_t chunk_id)
{
    group_member *m = ctx;
    spead_chunk_group *g = m->group;
    size_t max_chunks = g->window.max_chunks;
    pthread_mutex_lock(&g->lock);
    g->received = 1;
    uint64_t id = (uint64_t) chunk_id;
    if (id >= g->window.head && id - g->window.head >= max_chunks) {
        uint64_t target = id - (max_chunks - 1);
        if (!g->lossless && target > g->flush_target)
            g->flush_target = target;
        while (g->window.head < target && !g->stopped) {
            if (!g->lossless) {
                /* release the lagging members that are idle ourselves; busy
                 * ones do it at the end of their batch */
                for (size_t i = 0; i < g->n_members; i++) {
                    group_member *x = g->members[i];
                    if (x == m || !x->stream || x->head >= target)
                        continue;
                    recv_stream *xs = x->stream;
                    if (pthread_mutex_trylock(&xs->lock) != 0)
                        continue;
                    pthread_mutex_unlock(&g->lock);
                    member_catch_up(x, target);
                    pthread_mutex_unlock(&xs->lock);
                    pthread_mutex_lock(&g->lock);
                }
                if (g->window.head >= target)
                    break;
            }
            struct timespec ts;
            spead_deadline_after_ms(CLOCK_MONOTONIC, GROUP_RETRY_MS, &ts);
            pthread_cond_timedwait(&g->head_moved, &g->lock, &ts);
        }
    }
    spead_chunk *c = NULL;
    if (!g->stopped)
        c = spead_chunk_window_get(&g->window, chunk_id,
                                   m->stream ? m->stream->chunker->config.stream_id : 0,
                                   &g->window_ops);
    pthread_mutex_unlock(&g->lock);
    return c;
}

static void member_ready(void *ctx, spead_chunk *c)
{
    /* the group owns the chunks: they leave through its window */
    (void) ctx;
    (void) c;
}

static void member_head_updated(void *ctx, uint64_t head)
{
    group_member *m = ctx;
    spead_chunk_group *g = m->group;
    pthread_mutex_lock(&g->lock);
    if (head > m->head) {
        m->head = head;
        advance_group(g);
    }
    pthread_mutex_unlock(&g->lock);
}

static void member_after_batch(void *ctx)
{
    group_member *m = ctx;
    uint64_t target = __atomic_load_n(&m->group->flush_target, __ATOMIC_RELAXED);
    if (target > 0)
        member_catch_up(m, target);
}

static void member_stop(void *ctx)
{
    group_member *m = ctx;
    spead_chunk_ring_stop(m->group->free);
    spead_chunk_ring_stop(m->group->data);
}

static void member_ended(void *ctx)
{
    group_member *m = ctx;
    /* its window was flushed (head at the end), so it holds nothing back */
    spead_chunk_ring_remove_producer(m->group->data);
}

static void member_release(void *ctx)
{
    group_member *m = ctx;
    spead_chunk_group *g = m->group;
    pthread_mutex_lock(&g->lock);
    m->stream = NULL;
    m->head = UINT64_MAX;
    advance_group(g);
    pthread_mutex_unlock(&g->lock);
    spead_chunk_group_decref(g);
}

int spead_chunk_group_add_member(spead_chunk_group *g, size_t index, spead_chunk_manager *out)
{
    pthread_mutex_lock(&g->lock);
    if (g->received || index != g->n_members) {
        pthread_mutex_unlock(&g->lock);
        return -1;
    }
    if (g->n_members == g->cap_members) {
        size_t cap = g->cap_members ? 2 * g->cap_members : 4;
        group_member **members = realloc(g->members, cap * sizeof(*members));
        if (!members) {
            pthread_mutex_unlock(&g->lock);
            return -1;
        }
        g->members = members;
        g->cap_members = cap;
    }
    group_member *m = calloc(1, sizeof(*m));
    if (!m) {
        pthread_mutex_unlock(&g->lock);
        return -1;
    }
    m->group = g;
    m->index = index;
    m->head = g->window.head;
    g->members[g->n_members++] = m;
    pthread_mutex_unlock(&g->lock);
    spead_chunk_group_incref(g);
    spead_chunk_ring_add_producer(g->data);
    out->allocate = member_allocate;
    out->ready = member_ready;
    out->head_updated = member_head_updated;
    out->after_batch = member_after_batch;
    out->stop = member_stop;
    out->ended = member_ended;
    out->release = member_release;
    out->ctx = m;
    return 0;
}

void spead_chunk_group_set_member_stream(spead_chunk_group *g, size_t index, recv_stream *s)
{
    pthread_mutex_lock(&g->lock);
    if (index < g->n_members)
        g->members[index]->stream = s;
    pthread_mutex_unlock(&g->lock);
}

void spead_chunk_group_stop(spead_chunk_group *g)
{
    spead_chunk_ring_stop(g->free);
    spead_chunk_ring_stop(g->data);
    pthread_mutex_lock(&g->lock);
    g->stopped = 1;
    pthread_cond_broadcast(&g->head_moved);
    pthread_mutex_unlock(&g->lock);
    /* each member in turn: hold its stream (unless it is going away) while
     * stopping it without the group lock */
    for (size_t i = 0;; i++) {
        pthread_mutex_lock(&g->lock);
        if (i >= g->n_members) {
            pthread_mutex_unlock(&g->lock);
            break;
        }
        recv_stream *s = g->members[i]->stream;
        int held = s && recv_stream_try_incref(s);
        pthread_mutex_unlock(&g->lock);
        if (held) {
            recv_stream_stop(s);
            recv_stream_decref(s);
        }
    }
    pthread_mutex_lock(&g->lock);
    spead_chunk_window_flush_all(&g->window, UINT64_MAX, &g->window_ops);
    pthread_mutex_unlock(&g->lock);
}

spead_chunk *spead_chunk_group_take_released(spead_chunk_group *g)
{
    pthread_mutex_lock(&g->lock);
    spead_chunk *list = g->released;
    g->released = NULL;
    pthread_mutex_unlock(&g->lock);
    return list;
}
