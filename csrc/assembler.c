#include "assembler.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    live_heap heap;
    int in_use;
    size_t chain;                /* next slot in the same hash bucket, plus one; 0 ends */
} heap_slot;

struct spead_assembler {
    spead_assembler_config config;
    spead_live_heap_env env;
    spead_heap_sink sink;
    void *ctx;
    heap_slot *slots;            /* substream s owns slots [s * max_heaps, (s + 1) * max_heaps) */
    size_t *heads;               /* per substream: the slot a heap last started in */
    size_t *buckets;             /* hash of heap cnt -> first slot of its chain, plus one */
    int bucket_shift;
    size_t live;
};

static size_t bucket_of(const spead_assembler *a, int64_t cnt)
{
    /* Fibonacci hashing: the top bits of the product are well mixed */
    return (size_t) (((uint64_t) cnt * UINT64_C(11400714819323198485)) >> a->bucket_shift);
}

spead_assembler *spead_assembler_new(const spead_assembler_config *config,
                                     spead_allocator *alloc, spead_heap_sink sink, void *ctx)
{
    if (config->max_heaps == 0 || config->substreams == 0
        || config->max_heaps > SIZE_MAX / sizeof(heap_slot) / config->substreams)
        return NULL;
    size_t n_slots = config->max_heaps * config->substreams;
    int bits = 2;
    while (bits < 62 && ((size_t) 1 << bits) < 2 * n_slots)
        bits++;
    spead_assembler *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->slots = calloc(n_slots, sizeof(heap_slot));
    a->heads = calloc(config->substreams, sizeof(size_t));
    a->buckets = calloc((size_t) 1 << bits, sizeof(size_t));
    if (!a->slots || !a->heads || !a->buckets) {
        free(a->slots);
        free(a->heads);
        free(a->buckets);
        free(a);
        return NULL;
    }
    a->config = *config;
    a->bucket_shift = 64 - bits;
    /* each substream starts as if its last heap had used its last slot, so
     * the first heap takes the first slot */
    for (size_t s = 0; s < config->substreams; s++)
        a->heads[s] = config->max_heaps - 1;
    a->env.max_heap_size = config->max_heap_size;
    a->env.allow_out_of_order = config->allow_out_of_order;
    a->env.copy = spead_memcpy_function(0);
    a->env.placement = config->placement;
    spead_allocator_incref(alloc);
    a->env.alloc = alloc;
    a->sink = sink;
    a->ctx = ctx;
    return a;
}

void spead_assembler_free(spead_assembler *a)
{
    if (!a)
        return;
    size_t n_slots = a->config.max_heaps * a->config.substreams;
    for (size_t i = 0; i < n_slots; i++)
        if (a->slots[i].in_use)
            live_heap_clear(&a->slots[i].heap);
    spead_allocator_decref(a->env.alloc);
    free(a->slots);
    free(a->heads);
    free(a->buckets);
    free(a);
}

const spead_assembler_config *spead_assembler_get_config(const spead_assembler *a)
{
    return &a->config;
}

void spead_assembler_set_allocator(spead_assembler *a, spead_allocator *alloc)
{
    spead_allocator_incref(alloc);
    spead_allocator_decref(a->env.alloc);
    a->env.alloc = alloc;
}

void spead_assembler_set_memcpy(spead_assembler *a, int nontemporal)
{
    a->env.copy = spead_memcpy_function(nontemporal);
}

size_t spead_assembler_live(const spead_assembler *a)
{
    return a->live;
}

/* ---- the hash of live heaps ---- */

/* The slot of live heap ``cnt``, or NULL; ``*dist`` counts the slots looked at
 * (plus one). */
static heap_slot *lookup(const spead_assembler *a, int64_t cnt, uint64_t *dist)
{
    size_t link = a->buckets[bucket_of(a, cnt)];
    *dist = 1;
    while (link) {
        heap_slot *slot = &a->slots[link - 1];
        if (slot->heap.cnt == cnt)
            return slot;
        link = slot->chain;
        ++*dist;
    }
    return NULL;
}

static heap_slot *find(spead_assembler *a, int64_t cnt, uint64_t *stats)
{
    uint64_t dist;
    heap_slot *slot = lookup(a, cnt, &dist);
    stats[SPEAD_STAT_SEARCH_DIST] += dist;
    return slot;
}

int spead_assembler_payload_window(const spead_assembler *a, int64_t cnt, uint8_t **base,
                                   uint64_t *data_end, uint64_t *length)
{
    uint64_t dist;
    const heap_slot *slot = a->env.placement ? NULL : lookup(a, cnt, &dist);
    if (!slot)
        return 0;
    const live_heap *h = &slot->heap;
    if (h->heap_length < 0 || !h->payload || h->capacity < (uint64_t) h->heap_length)
        return 0;
    *base = h->payload;
    *data_end = h->data_end;
    *length = (uint64_t) h->heap_length;
    return 1;
}

static void link_slot(spead_assembler *a, heap_slot *slot)
{
    size_t *head = &a->buckets[bucket_of(a, slot->heap.cnt)];
    slot->chain = *head;
    *head = (size_t) (slot - a->slots) + 1;
    slot->in_use = 1;
    a->live++;
}

static void unlink_slot(spead_assembler *a, heap_slot *slot)
{
    size_t *link = &a->buckets[bucket_of(a, slot->heap.cnt)];
    size_t me = (size_t) (slot - a->slots) + 1;
    while (*link != me)
        link = &a->slots[*link - 1].chain;
    *link = slot->chain;
    slot->chain = 0;
    slot->in_use = 0;
    a->live--;
}

/* ---- heaps leaving ---- */

static void hand_on(spead_assembler *a, live_heap *h, int exit, uint64_t *stats)
{
    stats[SPEAD_STAT_HEAPS]++;
    if (exit == SPEAD_HEAP_EVICTED)
        stats[SPEAD_STAT_INCOMPLETE_HEAPS_EVICTED]++;
    else if (exit == SPEAD_HEAP_FLUSHED)
        stats[SPEAD_STAT_INCOMPLETE_HEAPS_FLUSHED]++;
    const spead_heap_placement *placement = a->env.placement;
    if (placement) {
        if (h->placed)
            placement->done(placement->ctx, &h->dest, live_heap_is_complete(h));
        live_heap_clear(h);
        return;
    }
    spead_heap *out = live_heap_finish(h, a->config.bug_compat, a->config.keep_payload_ranges);
    a->sink(a->ctx, out, exit);
}

static void retire(spead_assembler *a, heap_slot *slot, int exit, uint64_t *stats)
{
    unlink_slot(a, slot);
    hand_on(a, &slot->heap, exit, stats);
}

static int count_result(int result, uint64_t length, uint64_t *stats)
{
    if (result == SPEAD_FEED_ACCEPTED || result == SPEAD_FEED_STOP)
        stats[SPEAD_STAT_BYTES] += length;
    else if (result == SPEAD_FEED_DUPLICATE)
        stats[SPEAD_STAT_DUPLICATE_PACKETS]++;
    else
        stats[SPEAD_STAT_REJECTED_PACKETS]++;
    return result;
}

/* A packet that is a whole heap by itself never needs a slot, so it evicts
 * nothing. */
static int feed_single_packet_heap(spead_assembler *a, const spead_packet *pkt, uint64_t *stats)
{
    live_heap h;
    live_heap_init(&h, pkt->heap_cnt, pkt->heap_address_bits);
    int r = live_heap_add_packet(&h, pkt, &a->env);
    if (r != SPEAD_FEED_ACCEPTED) {
        live_heap_clear(&h);
        return count_result(r, 0, stats);
    }
    stats[SPEAD_STAT_SINGLE_PACKET_HEAPS]++;
    /* item addresses beyond its length keep a heap from completing, and no
     * later packet can change that */
    hand_on(a, &h, live_heap_is_complete(&h) ? SPEAD_HEAP_COMPLETED : SPEAD_HEAP_EVICTED, stats);
    return count_result(SPEAD_FEED_ACCEPTED, (uint64_t) pkt->payload_length, stats);
}

int spead_assembler_feed(spead_assembler *a, const spead_packet *pkt, uint64_t *stats)
{
    const spead_assembler_config *cfg = &a->config;
    stats[SPEAD_STAT_PACKETS]++;
    if (pkt->is_stop && cfg->stop_on_stop_item) {
        /* the stop heap ends the stream and is not handed on */
        heap_slot *slot = find(a, pkt->heap_cnt, stats);
        if (a->env.placement) {
            /* as in spead2, a placement (a chunk stream) still sees the stop
             * packet, as any other, before the stream stops: the place
             * callback is called for it and its payload written */
            live_heap tmp;
            live_heap_init(&tmp, pkt->heap_cnt, pkt->heap_address_bits);
            live_heap_add_packet(slot ? &slot->heap : &tmp, pkt, &a->env);
            live_heap_clear(&tmp);
        }
        if (slot) {
            unlink_slot(a, slot);
            live_heap_clear(&slot->heap);
        }
        return SPEAD_FEED_STOP;
    }
    if (pkt->heap_length < 0 && !cfg->allow_unsized_heaps)
        return count_result(SPEAD_FEED_NO_HEAP_LENGTH, 0, stats);
    if ((pkt->heap_length >= 0 && (uint64_t) pkt->heap_length > cfg->max_heap_size)
        || (uint64_t) pkt->payload_offset + (uint64_t) pkt->payload_length > cfg->max_heap_size)
        return count_result(SPEAD_FEED_HEAP_TOO_LARGE, 0, stats);
    if (pkt->heap_length >= 0 && pkt->payload_length == pkt->heap_length)
        return feed_single_packet_heap(a, pkt, stats);

    heap_slot *slot = find(a, pkt->heap_cnt, stats);
    int fresh = 0;
    if (!slot) {
        if (!cfg->allow_out_of_order && pkt->payload_offset != 0)
            return count_result(SPEAD_FEED_OUT_OF_ORDER, 0, stats);
        size_t sub = (size_t) ((uint64_t) pkt->heap_cnt % cfg->substreams);
        size_t next = a->heads[sub] + 1 == cfg->max_heaps ? 0 : a->heads[sub] + 1;
        a->heads[sub] = next;
        slot = &a->slots[sub * cfg->max_heaps + next];
        if (slot->in_use)
            retire(a, slot, SPEAD_HEAP_EVICTED, stats);
        live_heap_init(&slot->heap, pkt->heap_cnt, pkt->heap_address_bits);
        link_slot(a, slot);
        fresh = 1;
    }
    live_heap *h = &slot->heap;
    int r = live_heap_add_packet(h, pkt, &a->env);
    if (r != SPEAD_FEED_ACCEPTED) {
        if (fresh) {
            /* a heap started only by a refused packet leaves no trace */
            unlink_slot(a, slot);
            live_heap_clear(h);
        }
        return count_result(r, 0, stats);
    }
    if (live_heap_is_complete(h))
        retire(a, slot, SPEAD_HEAP_COMPLETED, stats);
    return count_result(SPEAD_FEED_ACCEPTED, (uint64_t) pkt->payload_length, stats);
}

void spead_assembler_flush(spead_assembler *a, uint64_t *stats)
{
    size_t max_heaps = a->config.max_heaps;
    for (size_t s = 0; s < a->config.substreams; s++) {
        /* the slot after the head is the oldest */
        for (size_t k = 1; k <= max_heaps; k++) {
            size_t i = (a->heads[s] + k) % max_heaps;
            heap_slot *slot = &a->slots[s * max_heaps + i];
            if (slot->in_use)
                retire(a, slot, SPEAD_HEAP_FLUSHED, stats);
        }
    }
}
