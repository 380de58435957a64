/* A receive stream: readers feed packets to a heap assembler, finished heaps
 * wait in a ring for the consumer.
 *
 * Everything here runs without the GIL. A stream is shared between the
 * Python object that owns it, the worker threads serving its readers and the
 * tasks queued on the pool; it is reference-counted.
 *
 * Locks: ``lock`` guards assembly (the assembler, the statistics, the
 * readers' ``closed`` and ``started`` flags, the stop state); the ring has
 * its own lock (which also guards the readers' ``paused`` flags), and so has
 * the log queue. The consumer never waits for a reader's batch: popping
 * takes only the ring lock. Order: lock, then the ring's lock. The reader
 * list changes only under both.
 */
#ifndef SPEAD2_RECV_STREAM_H
#define SPEAD2_RECV_STREAM_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "alloc.h"
#include "assembler.h"
#include "chunk_stream.h"
#include "heap.h"
#include "logq.h"
#include "ring.h"
#include "stats.h"
#include "tpool.h"
#include "wire.h"

typedef struct recv_stream recv_stream;
typedef struct spead_reader spead_reader;

/* What a reader's ``next`` found. */
enum {
    RECV_READ_PACKET = 0,   /* a decoded packet */
    RECV_READ_SKIP,         /* input that is not a packet, already counted and logged */
    RECV_READ_NONE,         /* nothing more for now */
    RECV_READ_END           /* the input has ended */
};

typedef struct {
    /* The next packet of the current batch; called with the stream lock
     * held. The packet's memory must stay valid until the next call. */
    int (*next)(spead_reader *r, spead_packet *pkt);
    /* Optional: the batch is over and the stream lock is about to be
     * released (packets the reader still holds may be assembled later). */
    void (*batch_end)(spead_reader *r);
    /* Begin I/O. No stream lock held. */
    void (*start)(spead_reader *r);
    /* The ring has room again for a paused reader. Called with the ring
     * lock held: post work, never block. */
    void (*resume)(spead_reader *r);
    /* Stop all I/O. No locks held. After it returns no callback of this
     * reader runs (except on the calling thread). */
    void (*close)(spead_reader *r);
    void (*destroy)(spead_reader *r);
    int lossy;              /* packets may be lost while the reader waits */
} spead_reader_ops;

struct spead_reader {
    const spead_reader_ops *ops;
    recv_stream *stream;
    spead_reader *next;
    int closed;             /* stream lock */
    int started;            /* stream lock */
    int paused;             /* ring lock */
};

typedef struct {
    spead_assembler_config assembly;
    size_t ring_heaps;      /* ring capacity, >= 1 */
    int contiguous_only;    /* else incomplete heaps are delivered too */
    int explicit_start;     /* readers wait for recv_stream_start */
    size_t n_stats;         /* SPEAD_STAT_CORE_COUNT plus the custom statistics */
    const uint8_t *stat_modes;  /* SPEAD_STAT_COUNTER/MAXIMUM for each (NULL: counters) */
    /* A chunk stream: heaps go into chunks (the ring of heaps is unused). */
    const spead_chunker_config *chunks;
    spead_chunk_manager chunk_manager;
} recv_stream_config;

struct recv_stream {
    int refs;
    pthread_mutex_t lock;
    pthread_cond_t idle_cond;  /* with lock: a reader stopped being busy */
    tpool_t *tp;
    void *stop_hook;           /* ends the stream when the pool stops */
    recv_stream_config config;
    spead_assembler *assembler;
    spead_ring ring;
    spead_logq log;
    uint64_t *stats;           /* config.n_stats counters */
    uint64_t *batch_stats;     /* custom statistics of the batch under way */
    uint8_t *stat_modes;
    spead_chunker *chunker;    /* chunk streams only */
    /* A chunk stream's worker may wait for its chunk manager (a free chunk,
     * room in the data ring) while it holds ``lock``: statistics are then
     * read from ``published``, the copy taken as the wait began. */
    pthread_mutex_t stats_lock;
    pthread_cond_t stats_cond; /* with stats_lock: a wait began, or a batch ended */
    uint64_t *published;       /* stats_lock */
    int chunk_waiting;         /* stats_lock */
    int stats_readers;         /* stats_lock: get_stats calls waiting for ``lock`` */
    int stop_requested;        /* no new data is accepted */
    int stopping_readers;      /* a thread is closing the readers */
    int started;               /* readers may run (always, without explicit start) */
    spead_reader *readers;     /* in the order added */
    int64_t last_cnt;          /* the last heap handed to the ring (for log lines) */
};

/* Returns NULL when out of memory or the configuration is invalid. A chunk
 * stream's manager is the stream's from this call on, even when it fails:
 * its ``release`` is called when the stream is gone. */
recv_stream *recv_stream_new(tpool_t *tp, const recv_stream_config *config,
                             spead_allocator *alloc);
void recv_stream_incref(recv_stream *s);
/* Take a reference unless the stream is already being destroyed; returns
 * whether it did. */
int recv_stream_try_incref(recv_stream *s);
void recv_stream_decref(recv_stream *s);
void recv_stream_set_allocator(recv_stream *s, spead_allocator *alloc);
void recv_stream_set_memcpy(recv_stream *s, int nontemporal);
/* Start readers waiting for an explicit start, in the order added. */
void recv_stream_start(recv_stream *s);
/* The consumer's stop: the ring stops first (what it holds stays
 * retrievable), then the readers close; heaps under assembly are lost.
 * Idempotent. */
void recv_stream_stop(recv_stream *s);
/* The input's end (a stop item, the end of a buffer...): the readers close,
 * heaps under assembly are handed on by the delivery rules, then the ring
 * stops. Idempotent. */
void recv_stream_end_of_input(recv_stream *s);
/* Pop a finished heap. timeout_ms < 0 waits without limit, 0 does not
 * wait. Returns 1 with *out set, 0 when ended and drained, -1 on timeout or
 * when log lines are waiting. */
int recv_stream_pop(recv_stream *s, spead_heap **out, int timeout_ms);
/* Copy the statistics (config.n_stats entries). */
void recv_stream_get_stats(recv_stream *s, uint64_t *out);
int recv_stream_fd(recv_stream *s);
size_t recv_stream_ring_size(recv_stream *s);
/* The log queue, for the consumer's thread. */
int recv_stream_logs_pending(recv_stream *s);
size_t recv_stream_take_logs(recv_stream *s, spead_log_entry *out, size_t max);
/* Drop the waiting lines (the consumer's rate limit has refused them);
 * returns how many. */
size_t recv_stream_discard_logs(recv_stream *s);
/* Lines below this Python logging level are not queued at all. */
void recv_stream_set_log_level(recv_stream *s, int level);

/* ---- for readers ---- */

/* Register a reader (the stream takes ownership) and start it unless the
 * stream waits for an explicit start. Returns -1 if the stream has stopped
 * (the reader is then destroyed). */
int recv_stream_add_reader(recv_stream *s, spead_reader *r);

enum {
    RECV_BATCH_IDLE = 0,    /* the reader had nothing more for now */
    RECV_BATCH_MORE,        /* the batch was cut short: the reader has more */
    RECV_BATCH_PAUSED,      /* the ring is full; ops->resume will be called */
    RECV_BATCH_DONE         /* the reader is finished (closed, or the stream ended) */
};
/* The one batch loop: take up to ``max_packets`` packets from ``r->ops->next``
 * into assembly, pausing the reader when the ring fills. Call without the
 * stream lock. */
int recv_stream_run_batch(recv_stream *s, spead_reader *r, size_t max_packets);
/* Log through the stream's queue; with the stream lock held or not. */
void recv_stream_log(recv_stream *s, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Count a statistic; the stream lock must be held. */
static inline void recv_stream_count_locked(recv_stream *s, int stat)
{
    s->stats[stat]++;
}

/* ---- readers ---- */
/* Feed a buffer of packets back to back (``data`` stays valid until the
 * reader is destroyed: the Python layer keeps its owner alive). */
int recv_add_buffer_reader(recv_stream *s, const uint8_t *data, size_t len);
/* Take ownership of a bound UDP socket. Returns 0 or -errno. */
int recv_add_udp_reader(recv_stream *s, int fd, size_t max_size);
/* Take ownership of a listening TCP socket: accept one connection and read
 * packets back to back from it; the stream ends when the peer closes.
 * Returns 0 or -errno. */
int recv_add_tcp_reader(recv_stream *s, int listen_fd, size_t max_size);
/* Take packets from an in-process queue. Returns 0 or -errno. */
struct spead_inproc_queue;
int recv_add_inproc_reader(recv_stream *s, struct spead_inproc_queue *queue);
/* Replay the UDP datagrams of a pcap or pcapng capture that match
 * ``filter`` (pcap_filter.h; "" takes all). Returns 0, -ESHUTDOWN if the
 * stream has stopped, or a RECV_PCAP_BAD_* with the reason in ``err``. */
enum { RECV_PCAP_BAD_FILE = 1, RECV_PCAP_BAD_FILTER = 2 };
int recv_add_udp_pcap_file_reader(recv_stream *s, const char *path, const char *filter,
                                  char *err, size_t err_len);

#endif
