/* Reader that feeds a stream from a block of memory holding packets back to
 * back.  Runs as a chain of tasks on the thread pool, a chunk of packets per
 * task, so other work interleaves and a full ring can pause it. */
#include <stdlib.h>

#include "recv.h"

#define MEM_CHUNK 256

typedef struct {
    spead_reader base;
    const uint8_t *data;
    size_t len;
    size_t pos;
    int finished;
} mem_reader;

static void stream_release(void *arg);
static void mem_task(void *arg);

static void post_mem_task(mem_reader *r)
{
    recv_stream_incref(r->base.stream);
    tpool_post(r->base.stream->tp, mem_task, r, stream_release);
}

static void stream_release(void *arg)
{
    mem_reader *r = arg;
    recv_stream_decref(r->base.stream);
}

/* A plausible header: magic, version, widths summing to 8 bytes. */
static int looks_like_header(const uint8_t *p, size_t avail)
{
    return avail >= 8 && p[0] == SPEAD_MAGIC && p[1] == SPEAD_VERSION && p[2] + p[3] == 8
           && p[3] >= 1 && p[3] <= 7;
}

static void mem_task(void *arg)
{
    mem_reader *r = arg;
    recv_stream *s = r->base.stream;
    int end = 0, paused = 0;
    pthread_mutex_lock(&s->lock);
    if (r->base.closed || r->finished) {
        pthread_mutex_unlock(&s->lock);
        return;
    }
    if (recv_stream_ring_full(s) && recv_stream_pause_if_full(s, &r->base)) {
        pthread_mutex_unlock(&s->lock);
        return;
    }
    size_t n = 0;
    while (r->pos < r->len && n < MEM_CHUNK) {
        spead_packet pkt;
        const uint8_t *p = r->data + r->pos;
        size_t avail = r->len - r->pos;
        int st = spead_decode_packet(p, avail, &pkt);
        if (st != SPEAD_PACKET_OK) {
            s->stats.bad_packets++;
            if (pkt.size > 0) {
                recv_stream_log_locked(s, SPEAD_LOG_INFO, "packet rejected at byte %zu: %s",
                                       r->pos, spead_packet_status_string(st));
                r->pos += pkt.size;
            } else {
                /* the packet's extent is unknown: resynchronise on the next header */
                size_t skip = 1;
                while (skip < avail && !looks_like_header(p + skip, avail - skip))
                    skip++;
                recv_stream_log_locked(s, SPEAD_LOG_INFO,
                                       "skipped %zu bytes at byte %zu that are not a valid "
                                       "SPEAD packet (%s)",
                                       skip, r->pos, spead_packet_status_string(st));
                r->pos += skip;
            }
            n++;
            continue;
        }
        r->pos += pkt.size;
        n++;
        int res = recv_stream_add_packet_locked(s, &pkt);
        if (res == SPEAD_ADD_STOP) {
            end = 1;
            break;
        }
        if (res == SPEAD_ADD_PAUSE && r->pos < r->len && recv_stream_pause_if_full(s, &r->base)) {
            /* the consumer's next get() resumes this reader */
            paused = 1;
            break;
        }
    }
    s->stats.batches++;
    if (n > s->stats.max_batch)
        s->stats.max_batch = n;
    if (r->pos >= r->len)
        end = 1;
    if (end)
        r->finished = 1;
    pthread_mutex_unlock(&s->lock);
    if (end)
        recv_stream_end_of_input(s);
    else if (!paused)
        post_mem_task(r);
}

static void mem_resume(spead_reader *base)
{
    post_mem_task((mem_reader *) base);
}

static void mem_close(spead_reader *base)
{
    recv_stream *s = base->stream;
    pthread_mutex_lock(&s->lock);
    base->closed = 1;
    pthread_mutex_unlock(&s->lock);
}

static void mem_destroy(spead_reader *base)
{
    free(base);
}

int recv_add_buffer_reader(recv_stream *s, const uint8_t *data, size_t len)
{
    mem_reader *r = calloc(1, sizeof(*r));
    if (!r)
        return -1;
    r->data = data;
    r->len = len;
    r->base.resume = mem_resume;
    r->base.close = mem_close;
    r->base.destroy = mem_destroy;
    if (recv_stream_add_reader(s, &r->base) != 0)
        return -1;
    post_mem_task(r);
    return 0;
}
