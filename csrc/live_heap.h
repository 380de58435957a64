/* A heap under assembly: the payload ranges that have arrived, its item
 * pointers (each kept once, in arrival order) and its payload memory.
 * Sans-IO: no locks, threads or clocks. */
#ifndef SPEAD2_LIVE_HEAP_H
#define SPEAD2_LIVE_HEAP_H

#include <stddef.h>
#include <stdint.h>

#include "alloc.h"
#include "heap.h"
#include "wire.h"

#include "copy.h"

/* What happened to a packet offered to a heap (or to the assembler). */
enum spead_feed_result {
    SPEAD_FEED_ACCEPTED = 0,
    SPEAD_FEED_STOP,              /* it carries the stop item that ends the stream */
    SPEAD_FEED_DUPLICATE,         /* its payload has already arrived */
    SPEAD_FEED_NO_HEAP_LENGTH,    /* no HEAP_LENGTH and unsized heaps are not allowed */
    SPEAD_FEED_HEAP_TOO_LARGE,    /* claims more than max_heap_size bytes */
    SPEAD_FEED_OUT_OF_ORDER,      /* in-order mode: not where the heap's data ends */
    SPEAD_FEED_LENGTH_MISMATCH,   /* HEAP_LENGTH differs from earlier packets' */
    SPEAD_FEED_LENGTH_TOO_SMALL,  /* HEAP_LENGTH smaller than what the heap already spans */
    SPEAD_FEED_FLAVOUR_MISMATCH,  /* heap address width differs from earlier packets' */
    SPEAD_FEED_PAST_HEAP_LENGTH,  /* payload extends past the heap length */
    SPEAD_FEED_OVERLAP,           /* payload partly overlaps what has arrived */
    SPEAD_FEED_POINTERS_LIMIT,    /* item pointers would take more than max_heap_size bytes */
    SPEAD_FEED_NO_MEMORY,         /* heap memory could not be allocated */
    SPEAD_FEED_RESULT_COUNT
};

const char *spead_feed_result_string(int result);

/* Where a heap's payload goes when a placement (a chunk stream) decides. */
typedef struct {
    uint8_t *data;                /* payload offset 0 goes here; NULL: the payload is dropped */
    uint64_t capacity;            /* bytes available from ``data`` */
    void *chunk;                  /* the placement's own (NULL: no chunk) */
    int64_t chunk_id;
    size_t heap_index;
    spead_memcpy_fn copy;         /* the copy for this heap's payload (NULL: the stream's) */
} spead_heap_dest;

/* Instead of allocating payload memory for each heap, ask a placement. */
typedef struct {
    /* A heap's first accepted packet: choose its destination (preset to
     * "dropped"). Only bytes up to ``capacity`` are ever written. */
    void (*place)(void *ctx, const spead_packet *pkt, spead_heap_dest *dest);
    /* Before a packet's payload is copied: nonzero to copy it. */
    int (*admit)(void *ctx, const spead_heap_dest *dest, const spead_packet *pkt);
    /* The heap left assembly, complete or not. */
    void (*done)(void *ctx, const spead_heap_dest *dest, int complete);
    void *ctx;
} spead_heap_placement;

typedef struct {
    uint64_t max_heap_size;       /* payload bytes, and item-pointer bytes, per heap */
    int allow_out_of_order;
    spead_allocator *alloc;       /* unless ``placement`` is set */
    spead_memcpy_fn copy;
    const spead_heap_placement *placement;
} spead_live_heap_env;

typedef struct live_heap {
    int64_t cnt;
    int heap_address_bits;
    int64_t heap_length;          /* -1 until a packet states it */
    uint64_t received;            /* payload bytes that arrived */
    uint64_t min_length;          /* bytes the heap must span: length, data and addresses */
    uint64_t data_end;            /* end of the furthest payload that arrived */
    uint8_t *payload;
    uint64_t capacity;
    void *handle;
    spead_allocator *alloc;
    spead_range *ranges;          /* out-of-order mode: what arrived, ascending, merged */
    size_t n_ranges, cap_ranges;
    uint64_t *pointers;
    size_t n_pointers, cap_pointers;
    uint64_t *seen;               /* hash set of pointers once there are many */
    size_t seen_cap;
    size_t packets;
    int placed;                   /* placement mode: ``dest`` has been chosen */
    spead_heap_dest dest;
} live_heap;

void live_heap_init(live_heap *h, int64_t cnt, int heap_address_bits);
/* Release everything the heap holds and leave it initialised-empty. */
void live_heap_clear(live_heap *h);
/* Offer a decoded packet of this heap. Returns SPEAD_FEED_ACCEPTED or a
 * reason for refusing it (the heap is then unchanged). */
int live_heap_add_packet(live_heap *h, const spead_packet *pkt, const spead_live_heap_env *env);
int live_heap_is_complete(const live_heap *h);
int live_heap_is_contiguous(const live_heap *h);
/* Move the heap's contents into a new finished heap (NULL when out of
 * memory: the heap is then cleared). ``keep_ranges`` records the payload
 * ranges; the payload is dropped unless the heap is contiguous. */
spead_heap *live_heap_finish(live_heap *h, int bug_compat, int keep_ranges);

#endif
