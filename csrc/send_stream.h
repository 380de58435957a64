/* Outgoing stream core: a queue of requests (each a group of one or more
 * heaps) drained in order by one sender at a time (the calling thread for
 * blocking sends, a thread-pool worker for asynchronous ones), rate
 * limiting, and a completion queue signalled through an eventfd.  Nothing
 * here touches Python objects.
 */
#ifndef SPEAD2_SEND_STREAM_H
#define SPEAD2_SEND_STREAM_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "send_packet.h"
#include "tpool.h"

typedef struct send_req send_req;
typedef struct send_stream send_stream;

/* One heap of a request. */
typedef struct {
    const send_item *items;   /* into the request's item array */
    size_t n_items;
    send_layout layout;       /* computed (and checked) by the caller */
    int64_t cnt;              /* heap counter; -1 = next from the stream */
    size_t substream;         /* < the writer's number of substreams */
    double wait_per_byte;     /* pacing: seconds per byte (1 / rate), 0 = unpaced */
} send_heap_spec;

/* A group of heaps sent as one (a single heap is a group of one).  The heap
 * specs, their items and the writer's per-heap scratch live in the same
 * allocation. */
struct send_req {
    send_req *next;
    uint64_t token;       /* caller's identifier (asynchronous sends) */
    int mode;             /* enum send_group_mode */
    int is_async;
    int done;
    int error;            /* 0, or an errno value */
    uint64_t bytes;       /* bytes on the wire for the whole group */
    size_t n_heaps;
    send_heap_spec *heaps;
    send_packetizer *pz;  /* writer's scratch: one per heap */
    size_t *active;       /* writer's scratch: one per heap */
    send_item items[];
};

typedef struct {
    /* Send every packet of a group; returns 0 or an errno value. Runs
     * without the GIL, from one thread at a time. */
    int (*write_group)(send_stream *s, send_req *req);
    void (*destroy)(send_stream *s);
} send_writer_ops;

/* Stream parameters (StreamConfig). */
typedef struct {
    size_t max_packet_size;
    double rate;                  /* bytes per second, 0 = unlimited */
    size_t burst_size;
    double burst_rate_ratio;      /* >= 1 */
    size_t max_heaps;
} send_config;

struct send_stream {
    int refs;
    const send_writer_ops *ops;
    void *writer;                 /* transport-specific state */
    send_config config;
    size_t num_substreams;
    tpool_t *tp;                  /* may be NULL (no asynchronous sends) */

    pthread_mutex_t lock;
    pthread_cond_t cond;          /* a blocking request finished / stream idle */
    send_req *head, *tail;        /* queued, not yet being sent */
    int draining;                 /* someone owns the sending role */
    size_t in_flight;             /* heaps queued + being sent */
    uint64_t next_cnt;            /* automatic cnt sequence */
    uint64_t cnt_step;
    send_req *done_head, *done_tail;  /* finished asynchronous requests */
    int notify_fd;                /* eventfd written when done_head fills */

    /* Pacing (touched only by the current sender), as the reference does
     * it: packets go out in bursts of at least burst_size bytes; after each
     * burst the sender waits until the burst would have taken its time at
     * the heaps' rates (send_time), and at least its time at burst_rate_ratio
     * times those rates after the previous burst (send_time_burst).  Times
     * are seconds of the stream's clock, as doubles: a tiny rate gives huge
     * but representable times. */
    double send_time;
    double send_time_burst;
    double rate_wait;             /* seconds the current burst is worth */
    size_t rate_bytes;            /* bytes in the current burst */
    /* The clock and sleep, replaceable for tests (send_stream_set_clock). */
    double (*clock)(void *ctx);
    void (*sleep_until)(void *ctx, double t);
    void *clock_ctx;
};

/* A request for n_heaps heaps holding n_items items in all. */
send_req *send_req_new(size_t n_heaps, size_t n_items);
void send_req_free(send_req *req);

/* For writers: start the packetisers of every heap of ``req`` and the
 * iterator that orders their packets; returns how many packets the group
 * has.  Writers take exactly that many from send_group_next, so that the
 * pacing check before each packet never makes the group wait after its
 * last one. */
uint64_t send_req_start(send_req *req, send_group_iter *g);

/* Creates a stream with one reference; ``tp`` is increfed if not NULL. */
send_stream *send_stream_new(const send_writer_ops *ops, void *writer, tpool_t *tp,
                             const send_config *config, size_t num_substreams);
void send_stream_incref(send_stream *s);
void send_stream_decref(send_stream *s);

/* Automatic cnts: the next is ``next`` (modulo 2**heap_address_bits), then
 * each one ``step`` more. */
void send_stream_set_cnt_sequence(send_stream *s, uint64_t next, uint64_t step);

/* Blocking send of a group.  Returns 0 when the request was processed
 * (result in req->error; the caller then frees req), or EAGAIN without
 * taking it when its heaps do not fit in max_heaps beside those in flight. */
int send_stream_send_sync(send_stream *s, send_req *req);

/* Queue for a worker; completion is reported through send_stream_pop_done.
 * Returns 0, EAGAIN when full (req not taken), or ESHUTDOWN if the thread
 * pool is stopped (req not taken). */
int send_stream_send_async(send_stream *s, send_req *req);

/* Block until nothing is in flight. */
void send_stream_flush(send_stream *s);

/* Lock the stream once no sender is active (for reading writer state).
 * Pair with send_stream_unlock. */
void send_stream_lock_idle(send_stream *s);
void send_stream_unlock(send_stream *s);

/* Enable completion notification; returns the eventfd or -1 (errno set). */
int send_stream_enable_notify(send_stream *s);
/* Take the list of finished asynchronous requests (and reset the eventfd). */
send_req *send_stream_pop_done(send_stream *s);

/* Replace the pacing clock (seconds) and sleep; NULLs restore the real
 * ones (CLOCK_MONOTONIC).  Call while nothing is in flight. */
void send_stream_set_clock(send_stream *s, double (*clock)(void *ctx),
                           void (*sleep_until)(void *ctx, double t), void *ctx);

/* Pacing, for writers.  Before each packet, if send_stream_pace_due() the
 * writer hands over every packet it has gathered and calls
 * send_stream_pace_wait(); after taking a packet of ``bytes`` bytes from
 * heap ``h`` it calls send_stream_pace_account(). */
static inline int send_stream_pace_due(const send_stream *s)
{
    /* Unpaced bytes never make a sender wait, so they need no boundary:
     * only a burst that is worth some time ends. */
    return s->rate_bytes >= s->config.burst_size && s->rate_wait > 0.0;
}

void send_stream_pace_wait(send_stream *s);

/* For writers that hand over each packet as soon as they have it (nothing
 * gathered to send first): wait if pacing says so, then take the group's
 * next packet (as send_group_next). */
static inline size_t send_stream_paced_next(send_stream *s, send_group_iter *g, uint8_t *hdr,
                                            size_t *hdr_len, size_t *payload_length)
{
    if (send_stream_pace_due(s))
        send_stream_pace_wait(s);
    return send_group_next(g, hdr, hdr_len, payload_length);
}

static inline void send_stream_pace_account(send_stream *s, size_t bytes,
                                            const send_heap_spec *h)
{
    s->rate_bytes += bytes;
    s->rate_wait += (double) bytes * h->wait_per_byte;
}

#endif
