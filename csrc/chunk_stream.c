#include "chunk_stream.h"

#include <pthread.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chunk_ring.h"
#include "stats.h"

/* Heaps smaller than this are copied as the stream says: with only a few
 * cache lines per packet, the partial lines at either end dominate. */
#define NONTEMPORAL_MIN_HEAP 2048

static size_t round_up(size_t size, size_t align)
{
    return (size + align - 1) / align * align;
}

/* The size of this core's own (level 2) cache; 1 MiB when unknown. */
static uint64_t private_cache_size(void)
{
    long size = -1;
#ifdef _SC_LEVEL2_CACHE_SIZE
    size = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    return size > 0 ? (uint64_t) size : UINT64_C(1) << 20;
}

/* ---- the window's view of the manager ---- */

static spead_chunk *window_allocate(void *ctx, int64_t chunk_id)
{
    spead_chunker *c = ctx;
    return c->manager.allocate(c->manager.ctx, chunk_id);
}

/* Payloads may have been written with unfenced streaming stores (see
 * place()): every way a chunk leaves the stream's hands fences first. */

static void window_ready(void *ctx, spead_chunk *chunk)
{
    spead_chunker *c = ctx;
    spead_store_fence();
    c->manager.ready(c->manager.ctx, chunk);
}

static void window_head_updated(void *ctx, uint64_t head)
{
    spead_chunker *c = ctx;
    spead_store_fence();
    if (c->manager.head_updated)
        c->manager.head_updated(c->manager.ctx, head);
}

/* ---- placement ---- */

/* The first packet's immediates that the callback asked for. */
static void gather_items(spead_chunker *c, const spead_packet *pkt)
{
    int64_t *items = c->place_data->items;
    size_t n = c->config.n_items;
    for (size_t j = 0; j < n; j++)
        items[j] = -1;
    const uint8_t *p = pkt->pointers;
    int hab = pkt->heap_address_bits;
    for (int i = 0; i < pkt->n_items; i++, p += SPEAD_POINTER_SIZE) {
        uint64_t ptr = spead_load_be64(p);
        if (!spead_pointer_immediate(ptr))
            continue;
        uint64_t id = spead_pointer_id(ptr, hab);
        for (size_t j = 0; j < n; j++)
            if (c->item_ids[j] == id)
                items[j] = (int64_t) spead_pointer_address(ptr, hab);
    }
}

static void reject(spead_chunker *c, const spead_packet *pkt, const char *why)
{
    c->batch_stats[c->config.stat_rejected]++;
    if (c->log)
        spead_logq_push(c->log, SPEAD_LOG_WARNING, "heap %lld dropped: %s",
                        (long long) pkt->heap_cnt, why);
}

/* Flags needed in ``present`` from heap_index on. */
static uint64_t present_needed(const spead_chunker *c, uint64_t heap_length)
{
    size_t per = c->config.packet_presence_payload_size;
    if (per == 0)
        return 1;
    return heap_length == 0 ? 1 : (heap_length + per - 1) / per;
}

static void place(void *ctx, const spead_packet *pkt, spead_heap_dest *dest)
{
    spead_chunker *c = ctx;
    spead_chunk_place_data *d = c->place_data;
    gather_items(c, pkt);
    d->packet = pkt->pointers - SPEAD_HEADER_SIZE;
    d->packet_size = (size_t) (pkt->payload + pkt->payload_length - d->packet);
    d->chunk_id = -1;
    d->heap_index = 0;
    d->heap_offset = 0;
    d->batch_stats = c->batch_stats;
    d->extra_offset = 0;
    d->extra_size = 0;
    if (c->config.place_user)
        c->config.place_user(d, sizeof(*d), c->config.place_user_data);
    else
        c->config.place(d, sizeof(*d));

    int64_t chunk_id = d->chunk_id;
    if (chunk_id < 0) {
        c->batch_stats[c->config.stat_rejected]++;
        return;
    }
    if (spead_chunk_window_too_old(&c->window, chunk_id)) {
        c->batch_stats[c->config.stat_too_old]++;
        return;
    }
    spead_chunk *chunk = spead_chunk_window_get(&c->window, chunk_id, c->config.stream_id,
                                                &c->window_ops);
    if (!chunk)
        return; /* no chunk for that id (the free ring stopped): dropped silently */
    uint64_t length = pkt->heap_length >= 0 ? (uint64_t) pkt->heap_length : 0;
    if (d->heap_offset > chunk->data_size || length > chunk->data_size - d->heap_offset) {
        reject(c, pkt, "it does not fit in the chunk's data at the offset chosen");
        return;
    }
    uint64_t flags = present_needed(c, length);
    if (d->heap_index > chunk->present_size || flags > chunk->present_size - d->heap_index) {
        reject(c, pkt, "its heap index is beyond the chunk's present array");
        return;
    }
    if (d->extra_size > 0) {
        if (d->extra_size > c->config.max_heap_extra || !chunk->extra
            || d->extra_offset > chunk->extra_size
            || d->extra_size > chunk->extra_size - d->extra_offset) {
            reject(c, pkt, "its extra data does not fit in the chunk's extra buffer");
            return;
        }
        memcpy(chunk->extra + d->extra_offset, d->extra, d->extra_size);
    }
    dest->data = chunk->data + d->heap_offset;
    dest->capacity = length;
    /* A chunk larger than this core's cache leaves it before the consumer,
     * on another core, reads it: its payload is written with streaming
     * stores, which do not read each destination line before overwriting
     * it (only the partial lines at a packet's ends are written normally). */
    if (chunk->data_size >= c->bypass_cache_from && length >= NONTEMPORAL_MIN_HEAP)
        dest->copy = c->copy_nontemporal;
    dest->chunk = chunk;
    dest->chunk_id = chunk_id;
    dest->heap_index = d->heap_index;
}

static int admit(void *ctx, const spead_heap_dest *dest, const spead_packet *pkt)
{
    spead_chunker *c = ctx;
    /* the chunk left the window while the heap was incomplete: it belongs
     * to the consumer now and is not written again */
    if (spead_chunk_window_too_old(&c->window, dest->chunk_id))
        return 0;
    size_t per = c->config.packet_presence_payload_size;
    if (per) {
        spead_chunk *chunk = dest->chunk;
        /* within bounds: place() checked room for every packet's flag */
        chunk->present[dest->heap_index + (size_t) pkt->payload_offset / per] = 1;
    }
    return 1;
}

static void done(void *ctx, const spead_heap_dest *dest, int complete)
{
    spead_chunker *c = ctx;
    if (!dest->chunk || !complete)
        return;
    if (spead_chunk_window_too_old(&c->window, dest->chunk_id)) {
        c->batch_stats[c->config.stat_too_old]++;
        return;
    }
    if (!c->config.packet_presence_payload_size)
        ((spead_chunk *) dest->chunk)->present[dest->heap_index] = 1;
}

/* ---- life cycle ---- */

spead_chunker *spead_chunker_new(const spead_chunker_config *config,
                                 const spead_chunk_manager *manager, uint64_t *batch_stats,
                                 spead_logq *log)
{
    if (config->max_chunks == 0 || (!config->place && !config->place_user))
        return NULL;
    spead_chunker *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->config = *config;
    c->manager = *manager;
    c->batch_stats = batch_stats;
    c->log = log;
    c->bypass_cache_from = private_cache_size();
    c->copy_nontemporal = spead_memcpy_nontemporal_unfenced();
    /* the place data, then the items, then the extra scratch, each aligned */
    size_t items_at = round_up(sizeof(spead_chunk_place_data), alignof(int64_t));
    size_t extra_at = round_up(items_at + config->n_items * sizeof(int64_t), alignof(max_align_t));
    size_t total = round_up(extra_at + config->max_heap_extra, alignof(max_align_t));
    c->place_storage = aligned_alloc(alignof(max_align_t), total);
    c->item_ids = malloc((config->n_items ? config->n_items : 1) * sizeof(uint64_t));
    if (!c->place_storage || !c->item_ids
        || spead_chunk_window_init(&c->window, config->max_chunks) != 0) {
        free(c->place_storage);
        free(c->item_ids);
        free(c);
        return NULL;
    }
    memset(c->place_storage, 0, total);
    if (config->n_items)
        memcpy(c->item_ids, config->item_ids, config->n_items * sizeof(uint64_t));
    c->config.item_ids = c->item_ids;
    uint8_t *base = c->place_storage;
    c->place_data = (spead_chunk_place_data *) base;
    c->place_data->items = config->n_items ? (int64_t *) (base + items_at) : NULL;
    c->place_data->extra = config->max_heap_extra ? base + extra_at : NULL;
    c->window_ops.allocate = window_allocate;
    c->window_ops.ready = window_ready;
    c->window_ops.head_updated = window_head_updated;
    c->window_ops.ctx = c;
    c->placement.place = place;
    c->placement.admit = admit;
    c->placement.done = done;
    c->placement.ctx = c;
    return c;
}

void spead_chunker_free(spead_chunker *c)
{
    if (!c)
        return;
    spead_chunk_window_destroy(&c->window);
    free(c->place_storage);
    free(c->item_ids);
    free(c);
}

void spead_chunker_end_batch(spead_chunker *c)
{
    (void) c;
    /* another thread may flush this stream's window (a group member
     * catching up a lagging one) once the stream lock is free */
    spead_store_fence();
}

void spead_chunker_flush(spead_chunker *c)
{
    spead_chunk_window_flush_all(&c->window, UINT64_MAX, &c->window_ops);
}

void spead_chunker_flush_until(spead_chunker *c, uint64_t target)
{
    spead_chunk_window_flush_until(&c->window, target, &c->window_ops);
}

/* ---- the ring pair ---- */

struct spead_chunk_ring_pair {
    spead_chunk_ring *data, *free;
    pthread_mutex_t lock;
    spead_chunk *released;
};

spead_chunk_ring_pair *spead_chunk_ring_pair_new(spead_chunk_ring *data,
                                                 spead_chunk_ring *free_ring)
{
    spead_chunk_ring_pair *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    spead_chunk_ring_incref(data);
    spead_chunk_ring_incref(free_ring);
    p->data = data;
    p->free = free_ring;
    pthread_mutex_init(&p->lock, NULL);
    return p;
}

static void pair_release(void *ctx)
{
    spead_chunk_ring_pair *p = ctx;
    spead_chunk_ring_decref(p->data);
    spead_chunk_ring_decref(p->free);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

static spead_chunk *pair_allocate(void *ctx, int64_t chunk_id)
{
    spead_chunk_ring_pair *p = ctx;
    spead_chunk *c = NULL;
    (void) chunk_id;
    /* an empty free ring is backpressure: wait (a stopped ring gives none) */
    if (spead_chunk_ring_get(p->free, &c, -1) != 1)
        return NULL;
    return c;
}

static void pair_ready(void *ctx, spead_chunk *c)
{
    spead_chunk_ring_pair *p = ctx;
    if (spead_chunk_ring_put(p->data, c, -1) == 0)
        return;
    pthread_mutex_lock(&p->lock);
    c->next = p->released;
    p->released = c;
    pthread_mutex_unlock(&p->lock);
}

static void pair_stop(void *ctx)
{
    spead_chunk_ring_pair *p = ctx;
    spead_chunk_ring_stop(p->free);
    spead_chunk_ring_stop(p->data);
}

static void pair_ended(void *ctx)
{
    spead_chunk_ring_pair *p = ctx;
    spead_chunk_ring_remove_producer(p->data);
}

spead_chunk_manager spead_chunk_ring_pair_manager(spead_chunk_ring_pair *p)
{
    spead_chunk_manager m = {
        .allocate = pair_allocate,
        .ready = pair_ready,
        .head_updated = NULL,
        .after_batch = NULL,
        .stop = pair_stop,
        .ended = pair_ended,
        .release = pair_release,
        .ctx = p,
    };
    return m;
}

spead_chunk *spead_chunk_ring_pair_take_released(spead_chunk_ring_pair *p)
{
    pthread_mutex_lock(&p->lock);
    spead_chunk *list = p->released;
    p->released = NULL;
    pthread_mutex_unlock(&p->lock);
    return list;
}
