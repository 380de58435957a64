/* Reader that feeds a stream from a block of memory holding packets back to
 * back. Runs as a chain of tasks on the thread pool, a batch of packets per
 * task, so other work interleaves and a full ring can pause it. */
#include <stdlib.h>

#include "recv_task.h"

typedef struct {
    spead_reader base;
    const uint8_t *data;
    size_t len;
    size_t pos;
} mem_reader;

/* A plausible header: magic, version, widths summing to 8 bytes. */
static int looks_like_header(const uint8_t *p, size_t avail)
{
    return avail >= 8 && p[0] == SPEAD_MAGIC && p[1] == SPEAD_VERSION && p[2] + p[3] == 8
           && p[3] >= 1 && p[3] <= 7;
}

static int mem_next(spead_reader *base, spead_packet *pkt)
{
    mem_reader *r = (mem_reader *) base;
    if (r->pos >= r->len)
        return RECV_READ_END;
    const uint8_t *p = r->data + r->pos;
    size_t avail = r->len - r->pos;
    int st = spead_decode_packet(p, avail, pkt);
    if (st == SPEAD_PACKET_OK) {
        r->pos += pkt->size;
        return RECV_READ_PACKET;
    }
    recv_stream *s = base->stream;
    recv_stream_count_locked(s, SPEAD_STAT_BAD_PACKETS);
    if (pkt->size > 0) {
        recv_stream_log(s, SPEAD_LOG_INFO, "packet rejected at byte %zu: %s", r->pos,
                        spead_packet_status_string(st));
        r->pos += pkt->size;
    } else {
        /* the packet's extent is unknown: resynchronise on the next header */
        size_t skip = 1;
        while (skip < avail && !looks_like_header(p + skip, avail - skip))
            skip++;
        recv_stream_log(s, SPEAD_LOG_INFO,
                        "skipped %zu bytes at byte %zu that are not a valid SPEAD packet (%s)",
                        skip, r->pos, spead_packet_status_string(st));
        r->pos += skip;
    }
    return RECV_READ_SKIP;
}

static void mem_destroy(spead_reader *base)
{
    free(base);
}

static const spead_reader_ops mem_ops = {
    .next = mem_next,
    .start = task_reader_start,
    .resume = task_reader_start,
    .close = task_reader_close,
    .destroy = mem_destroy,
    .lossy = 0,
};

int recv_add_buffer_reader(recv_stream *s, const uint8_t *data, size_t len)
{
    mem_reader *r = calloc(1, sizeof(*r));
    if (!r)
        return -1;
    r->base.ops = &mem_ops;
    r->data = data;
    r->len = len;
    return recv_stream_add_reader(s, &r->base);
}
