#include "chunk_window.h"

#include <stdlib.h>

int spead_chunk_window_init(spead_chunk_window *w, size_t max_chunks)
{
    w->chunks = calloc(max_chunks ? max_chunks : 1, sizeof(spead_chunk *));
    if (!w->chunks)
        return -1;
    w->max_chunks = max_chunks;
    w->head = w->tail = 0;
    w->head_pos = w->tail_pos = 0;
    return 0;
}

void spead_chunk_window_destroy(spead_chunk_window *w)
{
    free(w->chunks);
    w->chunks = NULL;
}

static void flush_head(spead_chunk_window *w, const spead_chunk_window_ops *ops)
{
    spead_chunk *c = w->chunks[w->head_pos];
    w->chunks[w->head_pos] = NULL;
    w->head++;
    if (++w->head_pos == w->max_chunks)
        w->head_pos = 0;
    if (c)
        ops->ready(ops->ctx, c);
}

static void head_moved(spead_chunk_window *w, const spead_chunk_window_ops *ops)
{
    if (ops->head_updated)
        ops->head_updated(ops->ctx, w->head);
}

void spead_chunk_window_flush_all(spead_chunk_window *w, uint64_t next,
                                  const spead_chunk_window_ops *ops)
{
    uint64_t orig = w->head;
    while (w->head != w->tail)
        flush_head(w, ops);
    w->head = w->tail = next;
    if (w->head != orig)
        head_moved(w, ops);
}

void spead_chunk_window_flush_until(spead_chunk_window *w, uint64_t target,
                                    const spead_chunk_window_ops *ops)
{
    if (w->head >= target)
        return;
    while (w->head != w->tail && w->head < target)
        flush_head(w, ops);
    if (w->head < target)
        w->head = w->tail = target;
    head_moved(w, ops);
}

spead_chunk *spead_chunk_window_get(spead_chunk_window *w, int64_t chunk_id, uint64_t stream_id,
                                    const spead_chunk_window_ops *ops)
{
    if (spead_chunk_window_too_old(w, chunk_id))
        return NULL;
    uint64_t id = (uint64_t) chunk_id;
    if (id >= w->tail && id - w->tail >= w->max_chunks) {
        /* so far ahead that nothing in the window survives */
        spead_chunk_window_flush_all(w, id - (w->max_chunks - 1), ops);
    }
    while (id >= w->tail) {
        if (w->tail - w->head == w->max_chunks) {
            flush_head(w, ops);
            head_moved(w, ops);
        }
        spead_chunk *c = ops->allocate(ops->ctx, (int64_t) w->tail);
        if (c) {
            c->chunk_id = (int64_t) w->tail;
            c->stream_id = stream_id;
        }
        w->chunks[w->tail_pos] = c;
        w->tail++;
        if (++w->tail_pos == w->max_chunks)
            w->tail_pos = 0;
    }
    size_t pos = w->head_pos + (size_t) (id - w->head);
    if (pos >= w->max_chunks)
        pos -= w->max_chunks;
    return w->chunks[pos];
}
