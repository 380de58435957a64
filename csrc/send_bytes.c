#include "send_bytes.h"

#include <errno.h>
#include <stdlib.h>

typedef struct {
    uint8_t *buf;
    size_t size;
    size_t capacity;
} bytes_writer;

static int reserve(bytes_writer *w, size_t extra)
{
    if (w->capacity - w->size >= extra)
        return 0;
    size_t need = w->size + extra;
    if (need < w->size)
        return ENOMEM;
    size_t cap = w->capacity ? w->capacity : 65536;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    uint8_t *nb = realloc(w->buf, cap);
    if (!nb)
        return ENOMEM;
    w->buf = nb;
    w->capacity = cap;
    return 0;
}

static int bytes_write_heap(send_stream *s, send_req *req)
{
    bytes_writer *w = s->writer;
    send_packetizer pz;
    if (send_packetizer_init(&pz, req->items, req->n_items, req->heap_address_bits,
                             (uint64_t) req->cnt, s->max_packet_size) != SEND_LAYOUT_OK)
        return EINVAL;
    if (pz.layout.total_bytes > SIZE_MAX || reserve(w, (size_t) pz.layout.total_bytes))
        return ENOMEM;
    size_t payload;
    size_t hdr;
    while ((hdr = send_packetizer_next(&pz, w->buf + w->size, &payload)) != 0) {
        send_stream_pace(s, hdr + payload);
        send_packetizer_copy(&pz, w->buf + w->size + hdr, payload);
        w->size += hdr + payload;
    }
    return 0;
}

static void bytes_destroy(send_stream *s)
{
    bytes_writer *w = s->writer;
    if (w) {
        free(w->buf);
        free(w);
    }
}

static const send_writer_ops bytes_ops = {bytes_write_heap, bytes_destroy};

send_stream *send_bytes_stream_new(tpool_t *tp, size_t max_packet_size, double rate,
                                   size_t burst_size, size_t max_heaps)
{
    bytes_writer *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    send_stream *s = send_stream_new(&bytes_ops, w, tp, max_packet_size, rate, burst_size,
                                     max_heaps);
    if (!s)
        free(w);
    return s;
}

const uint8_t *send_bytes_data(send_stream *s, size_t *size)
{
    bytes_writer *w = s->writer;
    *size = w->size;
    return w->buf;
}
