/* Declarative placement: the rule most place callbacks implement, evaluated
 * in C with no compiler or numba. One item (typically a timestamp) picks
 * the chunk by integer division; each axis then picks the heap's position
 * along one dimension of the chunk, from another item (channel, antenna,
 * polarisation...) or from the remainder of the chunk item; positions
 * combine row-major (the first axis varies slowest) into the heap's index,
 * and the heap's offset is its index times the heap size. */
#ifndef SPEAD2_CHUNK_PLACE_H
#define SPEAD2_CHUNK_PLACE_H

#include <stddef.h>
#include <stdint.h>

#include "chunk.h"

#define SPEAD_PLACE_MAX_AXES 8

typedef struct {
    int from_chunk_item;  /* position = (chunk item value % chunk_step) / divisor */
    size_t item;          /* otherwise: position = items[item] / divisor */
    uint64_t divisor;     /* >= 1 */
    uint64_t count;       /* positions 0 .. count-1; others drop the heap */
} spead_place_axis;

typedef struct {
    size_t chunk_item;    /* index into the place data's items */
    uint64_t chunk_step;  /* chunk id = value / chunk_step; >= 1 */
    size_t n_axes;
    spead_place_axis axes[SPEAD_PLACE_MAX_AXES];
    size_t length_item;   /* index of HEAP_LENGTH among the items */
    uint64_t heap_size;   /* heaps of any other length are dropped; >= 1 */
    int extra_value;      /* copy the chunk item's value (uint64, native order) into extra */
} spead_place_rule;

/* A place callback (the "void (void *, size_t, void *)" form); ``user`` is
 * a spead_place_rule. A heap the rule cannot place keeps chunk_id -1. */
void spead_place_by_rule(spead_chunk_place_data *d, size_t size, void *user);

#endif
