/* A finished heap: what the assembler hands on once a heap is complete, or
 * leaves assembly incomplete. Immutable from then on; the consumer owns it. */
#ifndef SPEAD2_HEAP_H
#define SPEAD2_HEAP_H

#include <stddef.h>
#include <stdint.h>

#include "alloc.h"

/* Bytes [start, end) of a heap's payload. */
typedef struct {
    uint64_t start, end;
} spead_range;

typedef struct spead_heap {
    int64_t cnt;
    int heap_address_bits;
    int bug_compat;
    int contiguous;            /* every byte up to payload_size arrived */
    int64_t heap_length;       /* as announced by the packets, or -1 */
    uint64_t received_length;  /* payload bytes that arrived */
    uint64_t payload_size;     /* bytes the items span (meaningful when contiguous) */
    uint8_t *payload;          /* NULL when not kept or empty */
    void *handle;
    spead_allocator *alloc;    /* holds a reference while payload is set */
    uint64_t *pointers;        /* item pointers (host order), header items removed */
    size_t n_pointers;
    spead_range *ranges;       /* payload that arrived, ascending and merged (if kept) */
    size_t n_ranges;
} spead_heap;

void spead_heap_free(spead_heap *h);
/* Drop the payload (an incomplete heap keeps only its item pointers). */
void spead_heap_release_payload(spead_heap *h);
/* Whether the heap carries a STREAM_CTRL immediate equal to ``value``. */
int spead_heap_has_ctrl(const spead_heap *h, uint64_t value);

#endif
