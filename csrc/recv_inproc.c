/* Reader that takes packets from an in-process queue (spead2.InprocQueue).
 * The queue's eventfd, duplicated so several readers can watch it, says
 * when packets wait; a stopped, drained queue ends the stream. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "inproc.h"
#include "recv_watch.h"

#define INPROC_BATCH 256
#define INPROC_ROUNDS 16

typedef struct {
    spead_watched_reader w;
    spead_inproc_queue *queue;
    spead_inproc_packet *current;   /* the packet handed out last */
} inproc_reader;

static int inproc_next(spead_reader *base, spead_packet *pkt)
{
    inproc_reader *r = (inproc_reader *) base;
    free(r->current);
    int ended;
    r->current = spead_inproc_queue_pop(r->queue, &ended);
    if (!r->current)
        return ended ? RECV_READ_END : RECV_READ_NONE;
    int st = spead_decode_packet(r->current->data, r->current->size, pkt);
    if (st != SPEAD_PACKET_OK) {
        recv_stream_count_locked(base->stream, SPEAD_STAT_BAD_PACKETS);
        recv_stream_log(base->stream, SPEAD_LOG_INFO, "packet rejected: %s",
                        spead_packet_status_string(st));
        return RECV_READ_SKIP;
    }
    return RECV_READ_PACKET;
}

static int inproc_process(spead_watched_reader *w)
{
    if (!watched_reader_enter(w))
        return 0;
    int rearm = 1;
    for (int round = 0; round < INPROC_ROUNDS; round++) {
        int res = recv_stream_run_batch(w->base.stream, &w->base, INPROC_BATCH);
        if (res == RECV_BATCH_DONE || res == RECV_BATCH_PAUSED) {
            rearm = 0;
            break;
        }
        if (res == RECV_BATCH_IDLE)
            break;
        /* more is waiting: the fd stays readable, so a re-armed watch
         * fires again if the rounds run out */
    }
    watched_reader_leave(w);
    return rearm;
}

static void inproc_destroy(spead_reader *base)
{
    inproc_reader *r = (inproc_reader *) base;
    if (r->w.fd >= 0)
        close(r->w.fd);
    free(r->current);
    spead_inproc_queue_decref(r->queue);
    free(r);
}

static const spead_reader_ops inproc_ops = {
    .next = inproc_next,
    .start = watched_reader_start,
    .resume = watched_reader_resume,
    .close = watched_reader_close,
    .destroy = inproc_destroy,
    .lossy = 0,
};

int recv_add_inproc_reader(recv_stream *s, spead_inproc_queue *queue)
{
    int fd = dup(spead_inproc_queue_fd(queue));
    if (fd < 0)
        return -errno;
    inproc_reader *r = calloc(1, sizeof(*r));
    if (!r) {
        close(fd);
        return -ENOMEM;
    }
    watched_reader_init(&r->w, &inproc_ops, fd, inproc_process, "in-process queue");
    spead_inproc_queue_incref(queue);
    r->queue = queue;
    if (recv_stream_add_reader(s, &r->w.base) != 0)
        return -ESHUTDOWN;
    return 0;
}
