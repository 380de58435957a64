/* Chunk stream groups: several streams (members), each on its own worker,
 * fill one sequence of chunks; traffic is split between them at the
 * network level. The group keeps its own window of max_chunks chunks, and
 * each member a window inside it. The first member needing a chunk takes
 * it from the free ring; a chunk goes to the data ring, in id order, once
 * every member has moved past it.
 *
 * A member needing a chunk beyond the group's window waits. In LOSSY mode
 * the group first makes the other members release the older chunks,
 * complete or not; in LOSSLESS mode it waits for them to move on by
 * themselves (so a member that receives nothing stalls the group).
 * Stopping the group unblocks both. */
#ifndef SPEAD2_CHUNK_GROUP_H
#define SPEAD2_CHUNK_GROUP_H

#include <stddef.h>
#include <stdint.h>

#include "chunk_ring.h"
#include "chunk_stream.h"

typedef struct spead_chunk_group spead_chunk_group;
struct recv_stream;

enum { SPEAD_EVICT_LOSSY = 0, SPEAD_EVICT_LOSSLESS = 1 };

/* NULL when out of memory. The group holds a reference to each ring. */
spead_chunk_group *spead_chunk_group_new(size_t max_chunks, int eviction_mode,
                                         spead_chunk_ring *data, spead_chunk_ring *free);
void spead_chunk_group_incref(spead_chunk_group *g);
void spead_chunk_group_decref(spead_chunk_group *g);
/* A manager for a new member (index ``index``, counted from 0). Returns -1
 * when out of memory, or when the group has already received data. The
 * stream built with it owns it; tell the group the stream with
 * spead_chunk_group_set_member_stream once it exists. */
int spead_chunk_group_add_member(spead_chunk_group *g, size_t index, spead_chunk_manager *out);
void spead_chunk_group_set_member_stream(spead_chunk_group *g, size_t index,
                                         struct recv_stream *s);
/* Stop both rings and every member; chunks in flight are released. */
void spead_chunk_group_stop(spead_chunk_group *g);
/* The chunks released so far (a list through ``next``), now the caller's. */
spead_chunk *spead_chunk_group_take_released(spead_chunk_group *g);

#endif
