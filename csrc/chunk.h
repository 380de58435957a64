/* Chunks: large caller-owned buffers into which a chunk stream places heap
 * payloads directly, and the interface of the place callbacks that choose
 * where each heap goes. */
#ifndef SPEAD2_CHUNK_H
#define SPEAD2_CHUNK_H

#include <stddef.h>
#include <stdint.h>

typedef struct spead_chunk {
    int64_t chunk_id;
    uint64_t stream_id;
    uint8_t *present;            /* one flag per heap (or per packet) */
    size_t present_size;
    uint8_t *data;
    size_t data_size;
    uint8_t *extra;              /* NULL when the chunk has none */
    size_t extra_size;
    void *owner;                 /* the Python object; a reference travels with the chunk */
    struct spead_chunk *next;    /* chunks released while stopping, until Python frees them */
} spead_chunk;

/* What a place callback is given and returns, as spead2 defines it (the
 * layout is an ABI: numba code written for spead2 reads these offsets). */
typedef struct {
    const uint8_t *packet;       /*  0 in:  the heap's first packet, from its header */
    size_t packet_size;          /*  8 in:  its length, header to end of payload */
    int64_t *items;              /* 16 in:  one per configured item id, -1 if absent */
    int64_t chunk_id;            /* 24 out: preset -1; negative drops the heap */
    size_t heap_index;           /* 32 out: preset 0; index into Chunk.present */
    size_t heap_offset;          /* 40 out: preset 0; payload offset in Chunk.data */
    uint64_t *batch_stats;       /* 48 in:  this batch's statistics, by stat index */
    uint8_t *extra;              /* 56 in:  max_heap_extra bytes of scratch (NULL if 0) */
    size_t extra_offset;         /* 64 out: preset 0; destination in Chunk.extra */
    size_t extra_size;           /* 72 out: preset 0; bytes of scratch to copy */
} spead_chunk_place_data;

#if defined(__LP64__)
_Static_assert(sizeof(spead_chunk_place_data) == 80, "chunk_place_data layout");
_Static_assert(offsetof(spead_chunk_place_data, batch_stats) == 48, "chunk_place_data layout");
_Static_assert(offsetof(spead_chunk_place_data, extra_size) == 72, "chunk_place_data layout");
#endif

typedef void (*spead_chunk_place_fn)(spead_chunk_place_data *data, size_t data_size);
typedef void (*spead_chunk_place_user_fn)(spead_chunk_place_data *data, size_t data_size,
                                          void *user_data);

#endif
