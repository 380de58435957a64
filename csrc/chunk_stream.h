/* The placement of a chunk stream: for each heap a place callback chooses
 * a chunk id and where in the chunk the heap goes; the chunk window
 * supplies the chunk; the payload is then written straight into the
 * chunk's data. Everything a callback returns is checked against the
 * chunk's buffers: a heap that would not fit is dropped and counted
 * (rejected_heaps), never written out of bounds. Runs on the stream's
 * worker, under the stream lock, without the GIL. */
#ifndef SPEAD2_CHUNK_STREAM_H
#define SPEAD2_CHUNK_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "chunk.h"
#include "chunk_window.h"
#include "live_heap.h"
#include "logq.h"

/* Where a stream's chunks come from and go (a ring pair, or a group). */
typedef struct {
    /* Obtain a chunk (may wait); NULL: none (the ring stopped). */
    spead_chunk *(*allocate)(void *ctx, int64_t chunk_id);
    /* Hand on a finished chunk (may wait). */
    void (*ready)(void *ctx, spead_chunk *c);
    /* The stream's window head moved (groups track their members). */
    void (*head_updated)(void *ctx, uint64_t head);
    /* At the end of each batch, with the stream lock held (may be NULL). */
    void (*after_batch)(void *ctx);
    /* The consumer stops the stream: stop what the stream may be waiting
     * on, so that it can flush without blocking. */
    void (*stop)(void *ctx);
    /* The stream has flushed its last chunk. */
    void (*ended)(void *ctx);
    /* The stream is gone: nothing will call the manager again. */
    void (*release)(void *ctx);
    void *ctx;
} spead_chunk_manager;

/* The manager of a stream with a ring of free chunks and a ring for full
 * ones (recv.ChunkRingStream). Chunks that cannot enter a stopped data ring
 * wait in the graveyard for their owner to take them back. */
typedef struct spead_chunk_ring_pair spead_chunk_ring_pair;
struct spead_chunk_ring;
spead_chunk_ring_pair *spead_chunk_ring_pair_new(struct spead_chunk_ring *data,
                                                 struct spead_chunk_ring *free);
/* The manager of a stream, which then owns ``p`` (and frees it when the
 * stream is gone). */
spead_chunk_manager spead_chunk_ring_pair_manager(spead_chunk_ring_pair *p);
/* The chunks released so far (a list through ``next``), now the caller's. */
spead_chunk *spead_chunk_ring_pair_take_released(spead_chunk_ring_pair *p);

typedef struct {
    const uint64_t *item_ids;    /* copied */
    size_t n_items;
    size_t max_chunks;
    size_t max_heap_extra;
    size_t packet_presence_payload_size;   /* 0: one present flag per heap */
    spead_chunk_place_fn place;            /* one of these two */
    spead_chunk_place_user_fn place_user;
    void *place_user_data;
    uint64_t stream_id;
    size_t stat_too_old;                   /* statistics indices */
    size_t stat_rejected;
} spead_chunker_config;

typedef struct spead_chunker {
    spead_chunker_config config;
    uint64_t *item_ids;
    spead_chunk_window window;
    spead_chunk_window_ops window_ops;
    spead_chunk_manager manager;
    spead_heap_placement placement;        /* what the assembler calls */
    spead_chunk_place_data *place_data;    /* with its items and extra storage */
    void *place_storage;
    uint64_t *batch_stats;                 /* where the place callback counts */
    uint64_t bypass_cache_from;            /* chunks of this many bytes or more: see place() */
    spead_memcpy_fn copy_nontemporal;
    spead_logq *log;                       /* for dropped heaps */
} spead_chunker;

/* NULL when out of memory or the configuration is unusable. */
spead_chunker *spead_chunker_new(const spead_chunker_config *config,
                                 const spead_chunk_manager *manager, uint64_t *batch_stats,
                                 spead_logq *log);
void spead_chunker_free(spead_chunker *c);
/* At the end of each batch of packets, before the stream lock is released. */
void spead_chunker_end_batch(spead_chunker *c);
/* Hand on every chunk in the window, in order. */
void spead_chunker_flush(spead_chunker *c);
/* Move the window's head to ``target`` at least (a group's eviction). */
void spead_chunker_flush_until(spead_chunker *c, uint64_t target);

#endif
