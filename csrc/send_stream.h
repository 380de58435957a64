/* Outgoing stream core: a queue of heaps drained in order by one sender at a
 * time (the calling thread for blocking sends, a thread-pool worker for
 * asynchronous ones), rate limiting, and a completion queue signalled through
 * an eventfd.  Nothing here touches Python objects.
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

/* One heap to send.  The item array lives in the same allocation. */
struct send_req {
    send_req *next;
    uint64_t token;       /* caller's identifier (asynchronous sends) */
    int64_t cnt;          /* heap counter; -1 = next from the stream */
    int heap_address_bits;
    int is_async;
    int done;
    int error;            /* 0, or an errno value */
    size_t n_items;
    send_item items[];
};

typedef struct {
    /* Send one heap; returns 0 or an errno value. Runs without the GIL, from
     * one thread at a time. */
    int (*write_heap)(send_stream *s, send_req *req);
    void (*destroy)(send_stream *s);
} send_writer_ops;

struct send_stream {
    int refs;
    const send_writer_ops *ops;
    void *writer;                 /* transport-specific state */
    size_t max_packet_size;
    double rate;                  /* bytes per second, 0 = unlimited (finite) */
    size_t burst_size;
    size_t max_heaps;
    tpool_t *tp;                  /* may be NULL (no asynchronous sends) */

    pthread_mutex_t lock;
    pthread_cond_t cond;          /* a blocking request finished / stream idle */
    send_req *head, *tail;        /* queued, not yet being sent */
    int draining;                 /* someone owns the sending role */
    size_t in_flight;             /* queued + being sent */
    uint64_t next_cnt;
    send_req *done_head, *done_tail;  /* finished asynchronous requests */
    int notify_fd;                /* eventfd written when done_head fills */

    /* Rate limiting (touched only by the current sender): bytes sent ahead
     * of the rate as of ``debt_ns``.  Counted in bytes rather than as a
     * time, because a tiny rate would make the time unrepresentable. */
    double debt;
    int64_t debt_ns;
};

send_req *send_req_new(size_t n_items);
void send_req_free(send_req *req);

/* Creates a stream with one reference; ``tp`` is increfed if not NULL. */
send_stream *send_stream_new(const send_writer_ops *ops, void *writer, tpool_t *tp,
                             size_t max_packet_size, double rate, size_t burst_size,
                             size_t max_heaps);
void send_stream_incref(send_stream *s);
void send_stream_decref(send_stream *s);

/* Blocking send.  Returns 0 when the request was processed (result in
 * req->error; the caller then frees req), or EBUSY without taking it when
 * max_heaps heaps are already in flight. */
int send_stream_send_sync(send_stream *s, send_req *req);

/* Queue for a worker; completion is reported through send_stream_pop_done.
 * Returns 0, EBUSY when full (req not taken), or ESHUTDOWN if the thread pool
 * is stopped (req not taken). */
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

/* Pacing: wait until ``bytes`` may go out under the rate limit. */
void send_stream_pace(send_stream *s, size_t bytes);

#endif
