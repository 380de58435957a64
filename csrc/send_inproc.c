#include "send_inproc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    spead_inproc_queue **queues;
    size_t n_queues;
    uint8_t *scratch;          /* one packet is assembled here, then copied in */
    size_t scratch_size;
} inproc_writer;

static int inproc_write_group(send_stream *s, send_req *req)
{
    inproc_writer *w = s->writer;
    /* Room for the largest packet of the group. */
    size_t need = 0;
    for (size_t i = 0; i < req->n_heaps; i++) {
        const send_layout *L = &req->heaps[i].layout;
        uint64_t largest = L->packet_size < L->total_bytes ? L->packet_size : L->total_bytes;
        if (largest > SIZE_MAX)
            return ENOMEM;
        if (largest > need)
            need = (size_t) largest;
    }
    if (need > w->scratch_size) {
        uint8_t *p = realloc(w->scratch, need);
        if (!p)
            return ENOMEM;
        w->scratch = p;
        w->scratch_size = need;
    }
    send_group_iter g;
    uint64_t packets = send_req_start(req, &g);
    for (uint64_t k = 0; k < packets; k++) {
        size_t hdr_len, payload;
        size_t h = send_stream_paced_next(s, &g, w->scratch, &hdr_len, &payload);
        if (h == SIZE_MAX)
            break;
        send_packetizer_copy(&req->pz[h], w->scratch + hdr_len, payload);
        int rc = spead_inproc_queue_add(w->queues[req->heaps[h].substream], w->scratch,
                                        hdr_len + payload);
        if (rc == 1)
            return ECANCELED;   /* the receiving side stopped the queue */
        if (rc != 0)
            return ENOMEM;
        send_stream_pace_account(s, hdr_len + payload, &req->heaps[h]);
    }
    return 0;
}

static void inproc_destroy(send_stream *s)
{
    inproc_writer *w = s->writer;
    if (w) {
        for (size_t i = 0; i < w->n_queues; i++)
            if (w->queues[i])
                spead_inproc_queue_decref(w->queues[i]);
        free(w->queues);
        free(w->scratch);
        free(w);
    }
}

static const send_writer_ops inproc_ops = {inproc_write_group, inproc_destroy};

send_stream *send_inproc_stream_new(tpool_t *tp, spead_inproc_queue *const *queues,
                                    size_t n_queues, const send_config *config)
{
    inproc_writer *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->queues = calloc(n_queues ? n_queues : 1, sizeof(*w->queues));
    send_stream *s = NULL;
    if (w->queues) {
        for (size_t i = 0; i < n_queues; i++) {
            spead_inproc_queue_incref(queues[i]);
            w->queues[i] = queues[i];
        }
        w->n_queues = n_queues;
        s = send_stream_new(&inproc_ops, w, tp, config, n_queues);
    }
    if (!s)
        inproc_destroy(&(send_stream){.writer = w});
    return s;
}
