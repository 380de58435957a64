/* A bounded queue of chunks between threads (recv.ChunkRingbuffer): put
 * waits for room, get waits for a chunk, both with a timeout; stopping
 * wakes every waiter. It counts producers: when the last one is removed,
 * the ring stops. Two eventfds tell event loops when there is data and
 * when there is room (both stay readable once stopped). */
#ifndef SPEAD2_CHUNK_RING_H
#define SPEAD2_CHUNK_RING_H

#include <pthread.h>
#include <stddef.h>

#include "chunk.h"

typedef struct spead_chunk_ring {
    int refs;
    pthread_mutex_t lock;
    pthread_cond_t cond;         /* a chunk arrived, room appeared, or the ring stopped */
    spead_chunk **items;
    size_t capacity, head, count;
    int stopped;
    size_t producers;
    int data_fd;                 /* readable iff count > 0 or stopped */
    int space_fd;                /* readable iff count < capacity or stopped */
} spead_chunk_ring;

/* NULL when out of resources; capacity >= 1. */
spead_chunk_ring *spead_chunk_ring_new(size_t capacity);
void spead_chunk_ring_incref(spead_chunk_ring *r);
/* The chunks still queued are not touched: their owner must take them out
 * first. */
void spead_chunk_ring_decref(spead_chunk_ring *r);
/* Returns 0 when queued, 1 if the ring is stopped, -1 on timeout (full).
 * timeout_ms < 0 waits without limit, 0 does not wait. */
int spead_chunk_ring_put(spead_chunk_ring *r, spead_chunk *c, int timeout_ms);
/* Returns 1 with *out set, 0 when stopped and empty, -1 on timeout. */
int spead_chunk_ring_get(spead_chunk_ring *r, spead_chunk **out, int timeout_ms);
/* Returns 1 if this call stopped the ring. */
int spead_chunk_ring_stop(spead_chunk_ring *r);
void spead_chunk_ring_add_producer(spead_chunk_ring *r);
/* Returns 1 if removing the last producer stopped the ring. */
int spead_chunk_ring_remove_producer(spead_chunk_ring *r);
size_t spead_chunk_ring_size(spead_chunk_ring *r);
int spead_chunk_ring_is_stopped(spead_chunk_ring *r);

#endif
