#include "recv_stream.h"

#include "deadline.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------ */
/* logging */

void recv_stream_log(recv_stream *s, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int queued = spead_logq_vpush(&s->log, level, fmt, ap);
    va_end(ap);
    /* a consumer waiting for heaps emits the line now rather than later */
    if (queued)
        spead_ring_wake(&s->ring);
}

static int logs_pending(void *arg)
{
    recv_stream *s = arg;
    return spead_logq_pending(&s->log);
}

/* ------------------------------------------------------------------ */
/* finished heaps */

static void heap_ready(void *ctx, spead_heap *h, int exit)
{
    recv_stream *s = ctx;
    (void) exit;
    if (!h) {
        recv_stream_log(s, SPEAD_LOG_WARNING, "out of memory: a finished heap was dropped");
        return;
    }
    if (!h->contiguous) {
        if (s->config.contiguous_only) {
            recv_stream_log(s, SPEAD_LOG_WARNING,
                            "dropped incomplete heap %lld (%llu/%lld bytes of payload)",
                            (long long) h->cnt, (unsigned long long) h->received_length,
                            (long long) h->heap_length);
            spead_heap_free(h);
            return;
        }
        /* an incomplete heap is handed on for its immediates only */
        spead_heap_release_payload(h);
    }
    int64_t cnt = h->cnt;
    s->last_cnt = cnt;
    int r = spead_ring_push(&s->ring, h);
    if (r != 0) {
        if (r > 0)
            recv_stream_log(s, SPEAD_LOG_INFO, "dropped heap %lld due to external stop",
                            (long long) cnt);
        else
            recv_stream_log(s, SPEAD_LOG_WARNING, "out of memory: heap %lld was dropped",
                            (long long) cnt);
        spead_heap_free(h);
    }
}

/* ------------------------------------------------------------------ */
/* readers pausing and resuming */

static void mark_paused(void *arg)
{
    ((spead_reader *) arg)->paused = 1;
}

/* With the stream lock held: pause ``r`` if the ring is full. */
static int pause_if_full(recv_stream *s, spead_reader *r)
{
    if (!spead_ring_is_full(&s->ring) || !spead_ring_if_full(&s->ring, mark_paused, r))
        return 0;
    s->stats[SPEAD_STAT_WORKER_BLOCKED]++;
    if (r->ops->lossy)
        recv_stream_log(s, SPEAD_LOG_WARNING,
                        "worker thread blocked by full ringbuffer on heap %lld",
                        (long long) s->last_cnt);
    return 1;
}

/* Ring lock held: a pop left room. */
static void resume_readers(void *arg)
{
    recv_stream *s = arg;
    for (spead_reader *r = s->readers; r; r = r->next) {
        if (r->paused) {
            r->paused = 0;
            r->ops->resume(r);
        }
    }
}

/* ------------------------------------------------------------------ */
/* the batch loop */

static void log_refused(recv_stream *s, const spead_packet *pkt, int result)
{
    switch (result) {
    case SPEAD_FEED_NO_HEAP_LENGTH:
        recv_stream_log(s, SPEAD_LOG_INFO, "packet rejected because it has no HEAP_LEN");
        break;
    case SPEAD_FEED_DUPLICATE:
        recv_stream_log(s, SPEAD_LOG_DEBUG, "packet rejected (heap %lld): %s at offset %lld",
                        (long long) pkt->heap_cnt, spead_feed_result_string(result),
                        (long long) pkt->payload_offset);
        break;
    case SPEAD_FEED_OUT_OF_ORDER:
        recv_stream_log(s, SPEAD_LOG_DEBUG, "packet rejected (heap %lld): %s (offset %lld)",
                        (long long) pkt->heap_cnt, spead_feed_result_string(result),
                        (long long) pkt->payload_offset);
        break;
    default:
        recv_stream_log(s, result == SPEAD_FEED_NO_MEMORY ? SPEAD_LOG_WARNING : SPEAD_LOG_INFO,
                        "packet rejected (heap %lld): %s", (long long) pkt->heap_cnt,
                        spead_feed_result_string(result));
        break;
    }
}

/* Stream lock held: fold the custom statistics of the batch (what place
 * callbacks counted) into the stream's, by mode, and start afresh. */
static void merge_batch_stats(recv_stream *s)
{
    for (size_t i = SPEAD_STAT_CORE_COUNT; i < s->config.n_stats; i++) {
        uint64_t v = s->batch_stats[i];
        if (s->stat_modes[i] == SPEAD_STAT_MAXIMUM) {
            if (v > s->stats[i])
                s->stats[i] = v;
        } else {
            s->stats[i] += v;
        }
        s->batch_stats[i] = 0;
    }
}

/* A chunk stream's lock is free again: wake statistics readers. */
static void stats_unlocked(recv_stream *s)
{
    if (!s->chunker || !__atomic_load_n(&s->stats_readers, __ATOMIC_SEQ_CST))
        return;
    pthread_mutex_lock(&s->stats_lock);
    pthread_cond_broadcast(&s->stats_cond);
    pthread_mutex_unlock(&s->stats_lock);
}

/* Stream lock held: the worker is about to wait for (or is done waiting
 * for) its chunk manager. */
static void chunk_wait(recv_stream *s, int waiting)
{
    pthread_mutex_lock(&s->stats_lock);
    if (waiting)
        memcpy(s->published, s->stats, s->config.n_stats * sizeof(uint64_t));
    s->chunk_waiting = waiting;
    pthread_cond_broadcast(&s->stats_cond);
    pthread_mutex_unlock(&s->stats_lock);
}

/* The chunker's view of the chunk manager: the same, with its waits marked. */
static spead_chunk *chunk_allocate(void *ctx, int64_t chunk_id)
{
    recv_stream *s = ctx;
    chunk_wait(s, 1);
    spead_chunk *c = s->config.chunk_manager.allocate(s->config.chunk_manager.ctx, chunk_id);
    chunk_wait(s, 0);
    return c;
}

static void chunk_ready(void *ctx, spead_chunk *c)
{
    recv_stream *s = ctx;
    chunk_wait(s, 1);
    s->config.chunk_manager.ready(s->config.chunk_manager.ctx, c);
    chunk_wait(s, 0);
}

static void chunk_head_updated(void *ctx, uint64_t head)
{
    recv_stream *s = ctx;
    if (s->config.chunk_manager.head_updated)
        s->config.chunk_manager.head_updated(s->config.chunk_manager.ctx, head);
}

int recv_stream_run_batch(recv_stream *s, spead_reader *r, size_t max_packets)
{
    pthread_mutex_lock(&s->lock);
    if (r->closed || s->stop_requested) {
        pthread_mutex_unlock(&s->lock);
        return RECV_BATCH_DONE;
    }
    if (pause_if_full(s, r)) {
        pthread_mutex_unlock(&s->lock);
        return RECV_BATCH_PAUSED;
    }
    int result = RECV_BATCH_MORE, end = 0;
    size_t n = 0;
    spead_logq_set_current(&s->log);
    while (n < max_packets) {
        spead_packet pkt;
        int st = r->ops->next(r, &pkt);
        if (st == RECV_READ_NONE) {
            result = RECV_BATCH_IDLE;
            break;
        }
        if (st == RECV_READ_END) {
            end = 1;
            break;
        }
        n++;
        if (st == RECV_READ_SKIP)
            continue;
        int fed = spead_assembler_feed(s->assembler, &pkt, s->stats);
        if (fed == SPEAD_FEED_STOP) {
            end = 1;
            break;
        }
        if (fed != SPEAD_FEED_ACCEPTED)
            log_refused(s, &pkt, fed);
        if (pause_if_full(s, r)) {
            result = RECV_BATCH_PAUSED;
            break;
        }
    }
    if (n > 0 || end) {
        s->stats[SPEAD_STAT_BATCHES]++;
        if (n > s->stats[SPEAD_STAT_MAX_BATCH])
            s->stats[SPEAD_STAT_MAX_BATCH] = n;
    }
    if (r->ops->batch_end)
        r->ops->batch_end(r);
    spead_logq_set_current(NULL);
    merge_batch_stats(s);
    if (s->chunker)
        spead_chunker_end_batch(s->chunker);
    if (s->chunker && s->config.chunk_manager.after_batch)
        s->config.chunk_manager.after_batch(s->config.chunk_manager.ctx);
    pthread_mutex_unlock(&s->lock);
    stats_unlocked(s);
    if (end) {
        recv_stream_end_of_input(s);
        return RECV_BATCH_DONE;
    }
    return result;
}

/* ------------------------------------------------------------------ */
/* life cycle */

static int hold_for_pool_stop(void *arg);
static void end_on_pool_stop(void *arg);

recv_stream *recv_stream_new(tpool_t *tp, const recv_stream_config *config,
                             spead_allocator *alloc)
{
    if (config->ring_heaps == 0 || config->n_stats < SPEAD_STAT_CORE_COUNT) {
        if (config->chunks && config->chunk_manager.release)
            config->chunk_manager.release(config->chunk_manager.ctx);
        return NULL;
    }
    recv_stream *s = calloc(1, sizeof(*s));
    if (!s) {
        if (config->chunks && config->chunk_manager.release)
            config->chunk_manager.release(config->chunk_manager.ctx);
        return NULL;
    }
    s->config = *config;
    s->config.chunks = NULL;
    s->config.stat_modes = NULL;
    spead_logq_init(&s->log);
    s->stats = calloc(config->n_stats, sizeof(uint64_t));
    s->batch_stats = calloc(config->n_stats, sizeof(uint64_t));
    s->published = calloc(config->n_stats, sizeof(uint64_t));
    s->stat_modes = calloc(config->n_stats, 1);
    if (!s->stats || !s->batch_stats || !s->published || !s->stat_modes)
        goto fail;
    for (size_t i = 0; i < config->n_stats; i++) {
        if (config->stat_modes)
            s->stat_modes[i] = config->stat_modes[i];
        else if (i < SPEAD_STAT_CORE_COUNT)
            s->stat_modes[i] = (uint8_t) spead_stat_modes[i];
    }
    spead_assembler_config assembly = config->assembly;
    if (config->chunks) {
        spead_chunk_manager waits = {
            .allocate = chunk_allocate,
            .ready = chunk_ready,
            .head_updated = chunk_head_updated,
            .ctx = s,
        };
        s->chunker = spead_chunker_new(config->chunks, &waits, s->batch_stats, &s->log);
        if (!s->chunker)
            goto fail;
        /* a heap's place in its chunk needs its length from the start */
        assembly.allow_unsized_heaps = 0;
        assembly.placement = &s->chunker->placement;
    }
    s->assembler = spead_assembler_new(&assembly, alloc, heap_ready, s);
    if (!s->assembler)
        goto fail;
    if (spead_ring_init(&s->ring, config->ring_heaps) != 0)
        goto fail;
    s->ring.on_space = resume_readers;
    s->ring.on_space_arg = s;
    s->refs = 1;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->idle_cond, NULL);
    pthread_mutex_init(&s->stats_lock, NULL);
    pthread_cond_init(&s->stats_cond, NULL);
    tpool_incref(tp);
    s->tp = tp;
    s->started = !config->explicit_start;
    /* the hook is what ends the stream when the pool stops: no stream
     * without it (it may fire at once, so the stream is complete by now) */
    s->stop_hook = tpool_add_stop_hook(tp, hold_for_pool_stop, end_on_pool_stop, s);
    if (!s->stop_hook) {
        recv_stream_decref(s);
        return NULL;
    }
    /* a pool that has already stopped will never serve this stream (and its
     * stop hooks have run): the stream starts out ended */
    if (tpool_is_stopped(tp))
        recv_stream_stop(s);
    return s;

fail:
    spead_assembler_free(s->assembler);
    spead_chunker_free(s->chunker);
    if (config->chunks && config->chunk_manager.release)
        config->chunk_manager.release(config->chunk_manager.ctx);
    free(s->stats);
    free(s->batch_stats);
    free(s->published);
    free(s->stat_modes);
    spead_logq_destroy(&s->log);
    free(s);
    return NULL;
}

int recv_stream_try_incref(recv_stream *s)
{
    int refs = __atomic_load_n(&s->refs, __ATOMIC_RELAXED);
    while (refs > 0) {
        if (__atomic_compare_exchange_n(&s->refs, &refs, refs + 1, 1,
                                        __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
            return 1;
    }
    return 0;
}

/* Stop hook: take a reference unless the stream is already being destroyed. */
static int hold_for_pool_stop(void *arg)
{
    return recv_stream_try_incref(arg);
}

/* Stop hook: no worker will serve the readers again, so end the stream now;
 * this wakes blocked consumers and fd watchers alike. */
static void end_on_pool_stop(void *arg)
{
    recv_stream *s = arg;
    recv_stream_stop(s);
    recv_stream_decref(s);
}

void recv_stream_incref(recv_stream *s)
{
    __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
}

static void free_heap_item(void *h)
{
    spead_heap_free(h);
}

void recv_stream_decref(recv_stream *s)
{
    if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    tpool_remove_stop_hook(s->tp, s->stop_hook);
    spead_reader *r = s->readers;
    while (r) {
        spead_reader *next = r->next;
        r->ops->destroy(r);
        r = next;
    }
    spead_assembler_free(s->assembler);
    if (s->chunker && s->config.chunk_manager.release)
        s->config.chunk_manager.release(s->config.chunk_manager.ctx);
    spead_chunker_free(s->chunker);
    free(s->stats);
    free(s->batch_stats);
    free(s->published);
    free(s->stat_modes);
    spead_ring_destroy(&s->ring, free_heap_item);
    spead_logq_destroy(&s->log);
    tpool_decref(s->tp);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->idle_cond);
    pthread_mutex_destroy(&s->stats_lock);
    pthread_cond_destroy(&s->stats_cond);
    free(s);
}

void recv_stream_set_allocator(recv_stream *s, spead_allocator *alloc)
{
    pthread_mutex_lock(&s->lock);
    spead_assembler_set_allocator(s->assembler, alloc);
    pthread_mutex_unlock(&s->lock);
}

void recv_stream_set_memcpy(recv_stream *s, int nontemporal)
{
    pthread_mutex_lock(&s->lock);
    spead_assembler_set_memcpy(s->assembler, nontemporal);
    pthread_mutex_unlock(&s->lock);
}

int recv_stream_add_reader(recv_stream *s, spead_reader *r)
{
    r->stream = s;
    r->next = NULL;
    pthread_mutex_lock(&s->lock);
    pthread_mutex_lock(&s->ring.lock);
    if (s->stop_requested) {
        pthread_mutex_unlock(&s->ring.lock);
        pthread_mutex_unlock(&s->lock);
        r->ops->destroy(r);
        return -1;
    }
    spead_reader **tail = &s->readers;
    while (*tail)
        tail = &(*tail)->next;
    *tail = r;
    int start = s->started;
    r->started = start;
    pthread_mutex_unlock(&s->ring.lock);
    pthread_mutex_unlock(&s->lock);
    if (start)
        r->ops->start(r);
    return 0;
}

void recv_stream_start(recv_stream *s)
{
    pthread_mutex_lock(&s->lock);
    if (s->started || s->stop_requested) {
        pthread_mutex_unlock(&s->lock);
        return;
    }
    s->started = 1;
    pthread_mutex_unlock(&s->lock);
    /* the list only grows, at its tail, so walking it unlocked is safe; a
     * reader added meanwhile starts itself */
    for (spead_reader *r = s->readers; r; r = r->next) {
        pthread_mutex_lock(&s->lock);
        int start = !r->started && !s->stop_requested;
        r->started = 1;
        pthread_mutex_unlock(&s->lock);
        if (start)
            r->ops->start(r);
    }
}

/* Close the readers and drain the assembler into the ring (if the ring has
 * already stopped, the heaps are lost), then stop the ring. */
static void shut_down(recv_stream *s)
{
    pthread_mutex_lock(&s->lock);
    s->stop_requested = 1;
    if (s->stopping_readers) {
        /* another thread is shutting down: wait for it to finish, unless
         * this is a worker (which that thread may be waiting for) */
        if (!tpool_in_worker(s->tp))
            while (s->stopping_readers != 2)
                pthread_cond_wait(&s->idle_cond, &s->lock);
        pthread_mutex_unlock(&s->lock);
        return;
    }
    s->stopping_readers = 1;
    pthread_mutex_unlock(&s->lock);
    /* the reader list only grows, and not once stop_requested is set */
    for (spead_reader *r = s->readers; r; r = r->next)
        r->ops->close(r);
    pthread_mutex_lock(&s->lock);
    spead_assembler_flush(s->assembler, s->stats);
    if (s->chunker) {
        spead_chunker_flush(s->chunker);
        if (s->config.chunk_manager.ended)
            s->config.chunk_manager.ended(s->config.chunk_manager.ctx);
    }
    merge_batch_stats(s);
    s->stopping_readers = 2;
    pthread_cond_broadcast(&s->idle_cond);
    pthread_mutex_unlock(&s->lock);
    stats_unlocked(s);
    spead_ring_stop(&s->ring);
}

void recv_stream_stop(recv_stream *s)
{
    spead_ring_stop(&s->ring);
    /* a chunk stream may be waiting on its rings: they stop first, so the
     * flush cannot block */
    if (s->chunker && s->config.chunk_manager.stop)
        s->config.chunk_manager.stop(s->config.chunk_manager.ctx);
    shut_down(s);
}

void recv_stream_end_of_input(recv_stream *s)
{
    shut_down(s);
}

int recv_stream_pop(recv_stream *s, spead_heap **out, int timeout_ms)
{
    void *item = NULL;
    int r = spead_ring_pop(&s->ring, &item, timeout_ms, logs_pending, s);
    if (r == 1)
        *out = item;
    return r;
}

void recv_stream_get_stats(recv_stream *s, uint64_t *out)
{
    size_t size = s->config.n_stats * sizeof(uint64_t);
    if (!s->chunker) {
        pthread_mutex_lock(&s->lock);
        memcpy(out, s->stats, size);
        pthread_mutex_unlock(&s->lock);
    } else {
        /* the worker may hold the lock while it waits for chunks: take the
         * statistics as that wait began rather than wait for it */
        pthread_mutex_lock(&s->stats_lock);
        __atomic_add_fetch(&s->stats_readers, 1, __ATOMIC_SEQ_CST);
        for (;;) {
            if (s->chunk_waiting) {
                memcpy(out, s->published, size);
                break;
            }
            if (pthread_mutex_trylock(&s->lock) == 0) {
                memcpy(out, s->stats, size);
                pthread_mutex_unlock(&s->lock);
                break;
            }
            /* woken when a batch ends or a wait begins; other holders of
             * the lock are brief, so look again after a while anyway (a
             * jump of the wall clock only makes that sooner or later) */
            struct timespec ts;
            spead_deadline_after_ms(CLOCK_REALTIME, 2, &ts);
            pthread_cond_timedwait(&s->stats_cond, &s->stats_lock, &ts);
        }
        __atomic_sub_fetch(&s->stats_readers, 1, __ATOMIC_SEQ_CST);
        pthread_mutex_unlock(&s->stats_lock);
    }
    out[SPEAD_STAT_LOG_SUPPRESSED] = spead_logq_dropped(&s->log);
}

int recv_stream_fd(recv_stream *s)
{
    return s->ring.efd;
}

size_t recv_stream_ring_size(recv_stream *s)
{
    return spead_ring_size(&s->ring);
}

int recv_stream_logs_pending(recv_stream *s)
{
    return spead_logq_pending(&s->log);
}

size_t recv_stream_take_logs(recv_stream *s, spead_log_entry *out, size_t max)
{
    return spead_logq_take(&s->log, out, max);
}

size_t recv_stream_discard_logs(recv_stream *s)
{
    spead_log_entry scratch[16];
    size_t total = 0, n;
    while ((n = spead_logq_take(&s->log, scratch, 16)) > 0)
        total += n;
    return total;
}

void recv_stream_set_log_level(recv_stream *s, int level)
{
    spead_logq_set_min_level(&s->log, level);
}
