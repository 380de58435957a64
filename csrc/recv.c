#include "recv.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* Log lines allowed per LOG_PERIOD_NS; further ones are only counted (in
 * stats.log_suppressed).  The budget is refilled by time, not by the
 * consumer draining the queue: a consumer waiting in get() drains every line
 * at once, which would otherwise let a flood of bad packets through. */
#define LOG_BUDGET 32
#define LOG_PERIOD_NS INT64_C(1000000000)

/* ------------------------------------------------------------------ */
/* copies */

#ifdef __SSE2__
static void *memcpy_nontemporal(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    /* head: bring the destination to 16-byte alignment */
    size_t head = (16 - ((uintptr_t) d & 15)) & 15;
    if (head > n)
        head = n;
    memcpy(d, s, head);
    d += head;
    s += head;
    n -= head;
    size_t blocks = n / 64;
    for (size_t i = 0; i < blocks; i++) {
        __m128i a = _mm_loadu_si128((const __m128i *) s);
        __m128i b = _mm_loadu_si128((const __m128i *) (s + 16));
        __m128i c = _mm_loadu_si128((const __m128i *) (s + 32));
        __m128i e = _mm_loadu_si128((const __m128i *) (s + 48));
        _mm_stream_si128((__m128i *) d, a);
        _mm_stream_si128((__m128i *) (d + 16), b);
        _mm_stream_si128((__m128i *) (d + 32), c);
        _mm_stream_si128((__m128i *) (d + 48), e);
        s += 64;
        d += 64;
    }
    n -= blocks * 64;
    _mm_sfence();
    memcpy(d, s, n);
    return dst;
}
#endif

void recv_stream_set_memcpy(recv_stream *s, int nontemporal)
{
    pthread_mutex_lock(&s->lock);
#ifdef __SSE2__
    s->copy = nontemporal ? memcpy_nontemporal : memcpy;
#else
    (void) nontemporal;
    s->copy = memcpy;
#endif
    pthread_mutex_unlock(&s->lock);
}

/* ------------------------------------------------------------------ */
/* finished heaps */

void spead_heap_free(spead_heap *h)
{
    if (!h)
        return;
    if (h->payload)
        spead_release(h->alloc, h->payload, h->handle);
    if (h->alloc)
        spead_allocator_decref(h->alloc);
    free(h->pointers);
    free(h);
}

static void live_heap_clear(live_heap *lh)
{
    if (lh->payload)
        spead_release(lh->alloc, lh->payload, lh->handle);
    if (lh->alloc)
        spead_allocator_decref(lh->alloc);
    free(lh->ranges);
    free(lh->pointers);
    memset(lh, 0, sizeof(*lh));
}

/* Turn a live heap into a finished one; the live slot is left empty. */
static spead_heap *live_heap_finish(recv_stream *s, live_heap *lh)
{
    spead_heap *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->cnt = lh->cnt;
    h->heap_address_bits = lh->heap_address_bits;
    h->bug_compat = s->bug_compat;
    h->payload = lh->payload;
    h->payload_size = lh->heap_length >= 0 ? (size_t) lh->heap_length : lh->max_end;
    h->handle = lh->handle;
    h->alloc = lh->alloc;
    h->pointers = lh->pointers;
    h->n_pointers = lh->n_pointers;
    lh->payload = NULL;
    lh->alloc = NULL;
    lh->pointers = NULL;
    live_heap_clear(lh);
    return h;
}

static int live_heap_complete(const live_heap *lh)
{
    return lh->heap_length >= 0 && lh->received == (size_t) lh->heap_length;
}

/* Without a stated length a heap may still be delivered when everything up
 * to the last byte seen arrived. */
static int live_heap_contiguous(const live_heap *lh)
{
    if (lh->heap_length >= 0)
        return live_heap_complete(lh);
    return lh->received == lh->max_end;
}

/* ------------------------------------------------------------------ */
/* logging (drained by the Python layer) */

static int64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void recv_stream_log_locked(recv_stream *s, int level, const char *fmt, ...)
{
    if (s->log_budget == 0) {
        int64_t now = monotonic_ns();
        if (now - s->log_period_start >= LOG_PERIOD_NS) {
            s->log_budget = LOG_BUDGET;
            s->log_period_start = now;
        }
    }
    if (s->log_budget == 0 || s->log_count == SPEAD_LOG_QUEUE) {
        s->stats.log_suppressed++;
        return;
    }
    s->log_budget--;
    size_t idx = (s->log_head + s->log_count) % SPEAD_LOG_QUEUE;
    spead_log_entry *e = &s->log[idx];
    e->level = level;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->text, sizeof(e->text), fmt, ap);
    va_end(ap);
    __atomic_store_n(&s->log_count, s->log_count + 1, __ATOMIC_RELAXED);
    /* wake a waiting consumer so it emits the line soon; it also wakes
     * periodically, so a wake-up lost to the race is harmless */
    pthread_cond_broadcast(&s->ring_cond);
}

int recv_stream_logs_pending(recv_stream *s)
{
    return __atomic_load_n(&s->log_count, __ATOMIC_RELAXED) != 0;
}

size_t recv_stream_take_logs(recv_stream *s, spead_log_entry *out, size_t max)
{
    /* The common case, no log lines, must not wait for s->lock: a reader
     * holds it while it works through a whole batch of packets. */
    if (__atomic_load_n(&s->log_count, __ATOMIC_RELAXED) == 0)
        return 0;
    pthread_mutex_lock(&s->lock);
    size_t n = 0;
    while (n < max && s->log_count > 0) {
        out[n++] = s->log[s->log_head];
        s->log_head = (s->log_head + 1) % SPEAD_LOG_QUEUE;
        __atomic_store_n(&s->log_count, s->log_count - 1, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* ------------------------------------------------------------------ */
/* ring */

static void efd_signal(recv_stream *s)
{
    uint64_t one = 1;
    ssize_t r = write(s->efd, &one, sizeof(one));
    (void) r;
}

static void efd_consume(recv_stream *s)
{
    uint64_t v;
    ssize_t r = read(s->efd, &v, sizeof(v));
    (void) r;
}

static int ring_push(recv_stream *s, spead_heap *h)
{
    pthread_mutex_lock(&s->ring_lock);
    if (s->ring_count == s->ring_cap) {
        size_t ncap = s->ring_cap * 2;
        spead_heap **nr = malloc(ncap * sizeof(*nr));
        if (!nr) {
            pthread_mutex_unlock(&s->ring_lock);
            return -1;
        }
        for (size_t i = 0; i < s->ring_count; i++)
            nr[i] = s->ring[(s->ring_head + i) % s->ring_cap];
        free(s->ring);
        s->ring = nr;
        s->ring_cap = ncap;
        s->ring_head = 0;
    }
    s->ring[(s->ring_head + s->ring_count) % s->ring_cap] = h;
    __atomic_store_n(&s->ring_count, s->ring_count + 1, __ATOMIC_RELAXED);
    efd_signal(s);
    pthread_cond_signal(&s->ring_cond);
    pthread_mutex_unlock(&s->ring_lock);
    return 0;
}

int recv_stream_ring_full(recv_stream *s)
{
    return __atomic_load_n(&s->ring_count, __ATOMIC_RELAXED) >= s->ring_heaps;
}

int recv_stream_pause_if_full(recv_stream *s, spead_reader *r)
{
    int paused = 0;
    pthread_mutex_lock(&s->ring_lock);
    if (s->ring_count >= s->ring_heaps) {
        r->paused = 1;
        s->stats.worker_blocked++;
        paused = 1;
    }
    pthread_mutex_unlock(&s->ring_lock);
    return paused;
}

static void deliver_locked(recv_stream *s, live_heap *lh)
{
    size_t packets = lh->packets;
    spead_heap *h = live_heap_finish(s, lh);
    if (!h || ring_push(s, h) != 0) {
        recv_stream_log_locked(s, SPEAD_LOG_WARNING, "out of memory: heap dropped");
        spead_heap_free(h);
        return;
    }
    s->stats.heaps++;
    if (packets == 1)
        s->stats.single_packet_heaps++;
}

/* Retire a live heap: deliver it if complete (or contiguous), else drop. */
static void retire_locked(recv_stream *s, live_heap *lh, int flushing)
{
    if (live_heap_complete(lh)
        || (live_heap_contiguous(lh) && (lh->max_end > 0 || lh->n_pointers > 0))) {
        deliver_locked(s, lh);
    } else {
        if (flushing)
            s->stats.incomplete_heaps_flushed++;
        else
            s->stats.incomplete_heaps_evicted++;
        recv_stream_log_locked(s, SPEAD_LOG_WARNING,
                               "dropped incomplete heap %lld (%zu/%lld bytes of payload)",
                               (long long) lh->cnt, lh->received, (long long) lh->heap_length);
        live_heap_clear(lh);
    }
}

/* ------------------------------------------------------------------ */
/* assembly */

static live_heap *find_or_start_heap(recv_stream *s, int64_t cnt)
{
    live_heap *free_slot = NULL, *oldest = NULL;
    for (size_t i = 0; i < s->max_heaps; i++) {
        live_heap *lh = &s->live[i];
        if (lh->in_use) {
            if (lh->cnt == cnt)
                return lh;
            if (!oldest || lh->seq < oldest->seq)
                oldest = lh;
        } else if (!free_slot) {
            free_slot = lh;
        }
    }
    if (!free_slot) {
        retire_locked(s, oldest, 0);
        free_slot = oldest;
    }
    free_slot->in_use = 1;
    free_slot->cnt = cnt;
    free_slot->heap_length = -1;
    free_slot->heap_address_bits = 0;
    free_slot->seq = s->next_seq++;
    return free_slot;
}

/* Whether [start, end) overlaps what has arrived; if not, record it. */
static int ranges_add(live_heap *lh, size_t start, size_t end)
{
    size_t n = lh->n_ranges;
    /* fast path: the packet continues the last range */
    if (n > 0 && lh->ranges[n - 1].end == start) {
        lh->ranges[n - 1].end = end;
        return 0;
    }
    /* find the first range whose end is beyond start */
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (lh->ranges[mid].end <= start)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < n && lh->ranges[lo].start < end)
        return -1; /* overlap */
    /* merge with neighbours where they touch */
    int merge_left = lo > 0 && lh->ranges[lo - 1].end == start;
    int merge_right = lo < n && lh->ranges[lo].start == end;
    if (merge_left && merge_right) {
        lh->ranges[lo - 1].end = lh->ranges[lo].end;
        memmove(&lh->ranges[lo], &lh->ranges[lo + 1], (n - lo - 1) * sizeof(byte_range));
        lh->n_ranges--;
    } else if (merge_left) {
        lh->ranges[lo - 1].end = end;
    } else if (merge_right) {
        lh->ranges[lo].start = start;
    } else {
        if (n == lh->cap_ranges) {
            size_t ncap = n ? n * 2 : 4;
            byte_range *nr = realloc(lh->ranges, ncap * sizeof(*nr));
            if (!nr)
                return -2;
            lh->ranges = nr;
            lh->cap_ranges = ncap;
        }
        memmove(&lh->ranges[lo + 1], &lh->ranges[lo], (n - lo) * sizeof(byte_range));
        lh->ranges[lo].start = start;
        lh->ranges[lo].end = end;
        lh->n_ranges++;
    }
    return 0;
}

static int ensure_capacity(recv_stream *s, live_heap *lh, size_t need)
{
    if (need <= lh->capacity)
        return 0;
    size_t cap = need;
    if (lh->heap_length < 0) {
        /* unknown final size: grow geometrically */
        size_t dbl = lh->capacity * 2;
        if (dbl > cap)
            cap = dbl;
        if (cap > s->max_heap_size)
            cap = s->max_heap_size;
    }
    void *handle = NULL;
    uint8_t *p = spead_allocate(s->alloc, cap, &handle);
    if (!p)
        return -1;
    if (lh->payload) {
        /* only the received ranges hold data, but copying the prefix is simpler */
        memcpy(p, lh->payload, lh->max_end);
        spead_release(lh->alloc, lh->payload, lh->handle);
        spead_allocator_decref(lh->alloc);
    }
    spead_allocator_incref(s->alloc);
    lh->alloc = s->alloc;
    lh->payload = p;
    lh->handle = handle;
    lh->capacity = cap;
    return 0;
}

/* Item pointers of a packet that a heap keeps (all but the header items). */
static size_t count_item_pointers(const spead_packet *pkt)
{
    size_t n = 0;
    const uint8_t *p = pkt->pointers;
    for (int i = 0; i < pkt->n_items; i++, p += 8)
        if (spead_pointer_id(spead_load_be64(p), pkt->heap_address_bits) > SPEAD_PAYLOAD_LENGTH_ID)
            n++;
    return n;
}

/* Whether the packet's item pointers fit the heap's budget for them:
 * max_heap_size bytes, like its payload.  Packets without payload are never
 * duplicates, so without this a repeated packet full of pointers would grow
 * a heap that never completes without limit. */
static int pointers_fit(const recv_stream *s, const live_heap *lh, const spead_packet *pkt)
{
    size_t limit = s->max_heap_size / sizeof(uint64_t);
    if (lh->n_pointers + (size_t) pkt->n_items <= limit)
        return 1; /* n_items counts the header items too */
    return lh->n_pointers <= limit && count_item_pointers(pkt) <= limit - lh->n_pointers;
}

static int add_pointers(live_heap *lh, const spead_packet *pkt)
{
    int hab = pkt->heap_address_bits;
    const uint8_t *p = pkt->pointers;
    for (int i = 0; i < pkt->n_items; i++, p += 8) {
        uint64_t ptr = spead_load_be64(p);
        uint64_t id = spead_pointer_id(ptr, hab);
        if (id <= SPEAD_PAYLOAD_LENGTH_ID)
            continue;
        if (lh->n_pointers == lh->cap_pointers) {
            size_t ncap = lh->cap_pointers ? lh->cap_pointers * 2 : 8;
            uint64_t *np = realloc(lh->pointers, ncap * sizeof(uint64_t));
            if (!np)
                return -1;
            lh->pointers = np;
            lh->cap_pointers = ncap;
        }
        lh->pointers[lh->n_pointers++] = ptr;
    }
    return 0;
}

int recv_stream_add_packet_locked(recv_stream *s, const spead_packet *pkt)
{
    if (s->stop_requested)
        return SPEAD_ADD_STOP;
    s->stats.packets++;
    if (pkt->is_stop) {
        /* the stop heap itself is not delivered; its packet ends the stream */
        s->stop_requested = 1;
        return SPEAD_ADD_STOP;
    }
    size_t offset = (size_t) pkt->payload_offset;
    size_t length = (size_t) pkt->payload_length;
    size_t end = offset + length;
    if ((pkt->heap_length >= 0 && (uint64_t) pkt->heap_length > s->max_heap_size)
        || end > s->max_heap_size) {
        s->stats.rejected_packets++;
        recv_stream_log_locked(s, SPEAD_LOG_INFO,
                               "packet rejected: heap %lld exceeds the %zu-byte heap size limit",
                               (long long) pkt->heap_cnt, s->max_heap_size);
        return recv_stream_ring_full(s) ? SPEAD_ADD_PAUSE : SPEAD_ADD_OK;
    }

    live_heap *lh = find_or_start_heap(s, pkt->heap_cnt);
    const char *why = NULL;
    if (lh->heap_address_bits == 0) {
        lh->heap_address_bits = pkt->heap_address_bits;
    } else if (lh->heap_address_bits != pkt->heap_address_bits) {
        why = "flavour differs from earlier packets of the heap";
    }
    if (!why && pkt->heap_length >= 0) {
        if (lh->heap_length < 0) {
            if ((size_t) pkt->heap_length < lh->max_end)
                why = "heap length is smaller than data already received";
            else
                lh->heap_length = pkt->heap_length;
        } else if (lh->heap_length != pkt->heap_length) {
            why = "heap length differs from earlier packets of the heap";
        }
    }
    if (!why && lh->heap_length >= 0 && end > (size_t) lh->heap_length)
        why = "payload extends past the heap length";
    if (!why && !pointers_fit(s, lh, pkt))
        why = "its item pointers would take more than max_heap_size bytes";
    if (why) {
        s->stats.rejected_packets++;
        recv_stream_log_locked(s, SPEAD_LOG_INFO, "packet rejected (heap %lld): %s",
                               (long long) pkt->heap_cnt, why);
    } else {
        int dup = 0;
        if (length > 0) {
            size_t need = lh->heap_length >= 0 ? (size_t) lh->heap_length : end;
            if (ensure_capacity(s, lh, need) != 0) {
                s->stats.rejected_packets++;
                recv_stream_log_locked(s, SPEAD_LOG_WARNING,
                                       "packet rejected (heap %lld): cannot allocate %zu bytes",
                                       (long long) pkt->heap_cnt, need);
                goto out;
            }
            int r = ranges_add(lh, offset, end);
            if (r == -1) {
                dup = 1;
            } else if (r < 0) {
                s->stats.rejected_packets++;
                goto out;
            }
        }
        if (dup) {
            s->stats.duplicate_packets++;
            recv_stream_log_locked(s, SPEAD_LOG_DEBUG,
                                   "packet rejected (heap %lld): duplicate payload at offset %zu",
                                   (long long) pkt->heap_cnt, offset);
            goto out;
        }
        if (add_pointers(lh, pkt) != 0) {
            s->stats.rejected_packets++;
            goto out;
        }
        if (length > 0)
            s->copy(lh->payload + offset, pkt->payload, length);
        lh->received += length;
        if (end > lh->max_end)
            lh->max_end = end;
        lh->packets++;
        s->stats.payload_bytes += length;
        if (live_heap_complete(lh))
            deliver_locked(s, lh);
    }
out:
    if (lh->in_use && lh->packets == 0 && lh->n_pointers == 0 && lh->max_end == 0
        && lh->heap_length < 0) {
        /* a heap started only by a rejected packet leaves no trace */
        live_heap_clear(lh);
    }
    return recv_stream_ring_full(s) ? SPEAD_ADD_PAUSE : SPEAD_ADD_OK;
}

/* ------------------------------------------------------------------ */
/* stream life cycle */

static int hold_for_pool_stop(void *arg);
static void end_on_pool_stop(void *arg);

recv_stream *recv_stream_new(tpool_t *tp, int bug_compat, size_t max_heaps, size_t ring_heaps,
                             size_t max_heap_size, spead_allocator *alloc)
{
    /* the ring starts with ring_heaps + 4 slots and may double: refuse sizes
     * whose slot count would wrap around */
    if (ring_heaps > SIZE_MAX / (4 * sizeof(spead_heap *)))
        return NULL;
    recv_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->refs = 1;
    s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK | EFD_SEMAPHORE);
    s->live = calloc(max_heaps ? max_heaps : 1, sizeof(live_heap));
    s->ring_cap = ring_heaps + 4;
    s->ring = calloc(s->ring_cap, sizeof(spead_heap *));
    if (s->efd < 0 || !s->live || !s->ring) {
        if (s->efd >= 0)
            close(s->efd);
        free(s->live);
        free(s->ring);
        free(s);
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->ring_lock, NULL);
    pthread_cond_init(&s->idle_cond, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->ring_cond, &ca);
    pthread_condattr_destroy(&ca);
    tpool_incref(tp);
    s->tp = tp;
    s->bug_compat = bug_compat;
    s->max_heaps = max_heaps;
    s->ring_heaps = ring_heaps;
    s->max_heap_size = max_heap_size;
    spead_allocator_incref(alloc);
    s->alloc = alloc;
    s->copy = memcpy;
    s->log_budget = LOG_BUDGET;
    s->log_period_start = monotonic_ns();
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
}

/* Stop hook: take a reference unless the stream is already being destroyed. */
static int hold_for_pool_stop(void *arg)
{
    recv_stream *s = arg;
    int refs = __atomic_load_n(&s->refs, __ATOMIC_RELAXED);
    while (refs > 0) {
        if (__atomic_compare_exchange_n(&s->refs, &refs, refs + 1, 1,
                                        __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
            return 1;
    }
    return 0;
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

void recv_stream_decref(recv_stream *s)
{
    if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    tpool_remove_stop_hook(s->tp, s->stop_hook);
    spead_reader *r = s->readers;
    while (r) {
        spead_reader *next = r->next;
        r->destroy(r);
        r = next;
    }
    for (size_t i = 0; i < s->max_heaps; i++)
        if (s->live[i].in_use)
            live_heap_clear(&s->live[i]);
    free(s->live);
    for (size_t i = 0; i < s->ring_count; i++)
        spead_heap_free(s->ring[(s->ring_head + i) % s->ring_cap]);
    free(s->ring);
    close(s->efd);
    spead_allocator_decref(s->alloc);
    tpool_decref(s->tp);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->ring_lock);
    pthread_cond_destroy(&s->idle_cond);
    pthread_cond_destroy(&s->ring_cond);
    free(s);
}

void recv_stream_set_allocator(recv_stream *s, spead_allocator *alloc)
{
    spead_allocator_incref(alloc);
    pthread_mutex_lock(&s->lock);
    spead_allocator *old = s->alloc;
    s->alloc = alloc;
    pthread_mutex_unlock(&s->lock);
    spead_allocator_decref(old);
}

int recv_stream_add_reader(recv_stream *s, spead_reader *r)
{
    pthread_mutex_lock(&s->lock);
    pthread_mutex_lock(&s->ring_lock);
    if (s->stop_requested || s->ended) {
        pthread_mutex_unlock(&s->ring_lock);
        pthread_mutex_unlock(&s->lock);
        r->destroy(r);
        return -1;
    }
    r->stream = s;
    r->next = s->readers;
    s->readers = r;
    pthread_mutex_unlock(&s->ring_lock);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* Called with lock held. */
static void flush_and_end_locked(recv_stream *s)
{
    pthread_mutex_lock(&s->ring_lock);
    int ended = s->ended;
    pthread_mutex_unlock(&s->ring_lock);
    if (ended)
        return;
    /* oldest first, so heaps come out in arrival order */
    for (;;) {
        live_heap *oldest = NULL;
        for (size_t i = 0; i < s->max_heaps; i++)
            if (s->live[i].in_use && (!oldest || s->live[i].seq < oldest->seq))
                oldest = &s->live[i];
        if (!oldest)
            break;
        retire_locked(s, oldest, 1);
    }
    pthread_mutex_lock(&s->ring_lock);
    s->ended = 1;
    efd_signal(s); /* the end marker: never consumed, keeps the fd readable */
    pthread_cond_broadcast(&s->ring_cond);
    pthread_mutex_unlock(&s->ring_lock);
}

void recv_stream_stop(recv_stream *s)
{
    pthread_mutex_lock(&s->lock);
    s->stop_requested = 1;
    if (s->stopping_readers) {
        /* someone else is closing the readers (or has): wait for the end */
        pthread_mutex_unlock(&s->lock);
        if (!tpool_in_worker(s->tp)) {
            pthread_mutex_lock(&s->ring_lock);
            while (!s->ended)
                pthread_cond_wait(&s->ring_cond, &s->ring_lock);
            pthread_mutex_unlock(&s->ring_lock);
        }
        return;
    }
    s->stopping_readers = 1;
    pthread_mutex_unlock(&s->lock);
    /* the reader list only grows at the head, under the lock, and not once
     * stop_requested is set, so walking it unlocked is safe */
    for (spead_reader *r = s->readers; r; r = r->next)
        r->close(r);
    pthread_mutex_lock(&s->lock);
    flush_and_end_locked(s);
    pthread_mutex_unlock(&s->lock);
}

void recv_stream_end_of_input(recv_stream *s)
{
    recv_stream_stop(s);
}

/* Called with ring_lock held. */
static void resume_readers_locked(recv_stream *s)
{
    for (spead_reader *r = s->readers; r; r = r->next) {
        if (r->paused) {
            r->paused = 0;
            r->resume(r);
        }
    }
}

int recv_stream_pop(recv_stream *s, spead_heap **out, int timeout_ms)
{
    struct timespec deadline;
    if (timeout_ms > 0) {
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long) (timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&s->ring_lock);
    for (;;) {
        if (s->ring_count > 0) {
            *out = s->ring[s->ring_head];
            s->ring_head = (s->ring_head + 1) % s->ring_cap;
            __atomic_store_n(&s->ring_count, s->ring_count - 1, __ATOMIC_RELAXED);
            efd_consume(s);
            if (s->ring_count < s->ring_heaps)
                resume_readers_locked(s);
            pthread_mutex_unlock(&s->ring_lock);
            return 1;
        }
        if (s->ended) {
            pthread_mutex_unlock(&s->ring_lock);
            return 0;
        }
        if (timeout_ms == 0 || __atomic_load_n(&s->log_count, __ATOMIC_RELAXED) > 0) {
            pthread_mutex_unlock(&s->ring_lock);
            return -1;
        }
        if (timeout_ms < 0) {
            pthread_cond_wait(&s->ring_cond, &s->ring_lock);
        } else if (pthread_cond_timedwait(&s->ring_cond, &s->ring_lock, &deadline) == ETIMEDOUT) {
            pthread_mutex_unlock(&s->ring_lock);
            return -1;
        }
    }
}

void recv_stream_get_stats(recv_stream *s, spead_recv_stats *out)
{
    pthread_mutex_lock(&s->lock);
    pthread_mutex_lock(&s->ring_lock);
    *out = s->stats;
    pthread_mutex_unlock(&s->ring_lock);
    pthread_mutex_unlock(&s->lock);
}

int recv_stream_fd(recv_stream *s)
{
    return s->efd;
}
