/* The window of chunks one chunk stream is filling: consecutive chunk ids
 * [head, tail), at most max_chunks of them. Sans-IO: where chunks come from
 * and where they go is up to the caller's callbacks.
 *
 * Asking for a chunk id at or past the tail advances the window: if the
 * jump is a whole window or more, everything is flushed and the window
 * restarts just below the id; then chunks are obtained for tail..id one at
 * a time, flushing the head first whenever the window is full. So earlier
 * ids are back-filled, chunks leave in increasing id order, and an id
 * below the head gets nothing. */
#ifndef SPEAD2_CHUNK_WINDOW_H
#define SPEAD2_CHUNK_WINDOW_H

#include <stddef.h>
#include <stdint.h>

#include "chunk.h"

typedef struct {
    /* Obtain the chunk for ``chunk_id`` (may return NULL: that id then gets
     * no chunk and its heaps are dropped). */
    spead_chunk *(*allocate)(void *ctx, int64_t chunk_id);
    /* A chunk leaves the window (never called with NULL). */
    void (*ready)(void *ctx, spead_chunk *c);
    /* The head moved to ``head`` (may be NULL). */
    void (*head_updated)(void *ctx, uint64_t head);
    void *ctx;
} spead_chunk_window_ops;

typedef struct {
    spead_chunk **chunks;        /* circular, max_chunks entries */
    size_t max_chunks;
    uint64_t head, tail;
    size_t head_pos, tail_pos;
} spead_chunk_window;

int spead_chunk_window_init(spead_chunk_window *w, size_t max_chunks);
void spead_chunk_window_destroy(spead_chunk_window *w);
/* The chunk for ``chunk_id`` (>= 0), obtaining chunks as needed; NULL if
 * the id is below the head or its chunk could not be obtained. Chunks it
 * obtains get their chunk_id and ``stream_id`` set. */
spead_chunk *spead_chunk_window_get(spead_chunk_window *w, int64_t chunk_id, uint64_t stream_id,
                                    const spead_chunk_window_ops *ops);
/* Whether ``chunk_id`` is below the head (negative ids always are). */
static inline int spead_chunk_window_too_old(const spead_chunk_window *w, int64_t chunk_id)
{
    return chunk_id < 0 || (uint64_t) chunk_id < w->head;
}
/* Flush chunks until the head is at least ``target``. */
void spead_chunk_window_flush_until(spead_chunk_window *w, uint64_t target,
                                    const spead_chunk_window_ops *ops);
/* Flush every chunk; the window restarts at ``next``. */
void spead_chunk_window_flush_all(spead_chunk_window *w, uint64_t next,
                                  const spead_chunk_window_ops *ops);

#endif
