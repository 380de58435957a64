/* Receive side: heap assembly, the stream's ring of finished heaps, readers.
 *
 * Everything here runs without the GIL.  A stream is shared between the
 * Python object that owns it, the worker threads serving its readers and any
 * tasks queued on the pool; it is reference-counted and protected by one
 * mutex.
 */
#ifndef SPEAD2_RECV_H
#define SPEAD2_RECV_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "alloc.h"
#include "tpool.h"
#include "wire.h"

/* A finished heap, handed from the workers to the consumer. */
typedef struct spead_heap {
    int64_t cnt;
    int heap_address_bits;
    int bug_compat;
    uint8_t *payload;          /* NULL when the heap carries no payload */
    size_t payload_size;
    void *handle;
    spead_allocator *alloc;    /* holds a reference while payload is set */
    uint64_t *pointers;        /* item pointers (host order), header items removed */
    size_t n_pointers;
} spead_heap;

void spead_heap_free(spead_heap *h);

typedef struct {
    size_t start, end;
} byte_range;

/* A heap under assembly. */
typedef struct {
    int in_use;
    int64_t cnt;
    int heap_address_bits;
    int64_t heap_length;       /* -1 until a packet states it */
    uint64_t seq;              /* arrival order, for eviction */
    uint8_t *payload;
    size_t capacity;
    void *handle;
    spead_allocator *alloc;
    size_t received;
    size_t max_end;
    byte_range *ranges;
    size_t n_ranges, cap_ranges;
    uint64_t *pointers;
    size_t n_pointers, cap_pointers;
    size_t packets;
} live_heap;

typedef struct {
    uint64_t packets;
    uint64_t batches;
    uint64_t max_batch;
    uint64_t heaps;
    uint64_t single_packet_heaps;
    uint64_t incomplete_heaps_evicted;
    uint64_t incomplete_heaps_flushed;
    uint64_t bad_packets;
    uint64_t duplicate_packets;
    uint64_t too_large_packets;
    uint64_t rejected_packets;
    uint64_t payload_bytes;
    uint64_t worker_blocked;
    uint64_t log_suppressed;
} spead_recv_stats;

#define SPEAD_LOG_QUEUE 64
#define SPEAD_LOG_LEN 200

typedef struct {
    int level;   /* Python logging level */
    char text[SPEAD_LOG_LEN];
} spead_log_entry;

struct recv_stream;

typedef struct spead_reader {
    struct recv_stream *stream;
    struct spead_reader *next;
    int closed;
    int paused;
    /* called with the stream lock held when the ring has room again */
    void (*resume)(struct spead_reader *r);
    /* called without the stream lock; stops all I/O for this reader */
    void (*close)(struct spead_reader *r);
    void (*destroy)(struct spead_reader *r);
} spead_reader;

typedef void *(*spead_memcpy_fn)(void *dst, const void *src, size_t n);

/* Locking: ``lock`` guards assembly (live heaps, stop_requested, readers'
 * ``closed``/``busy``, the log queue and most stats); ``ring_lock`` guards
 * the ring, ``ended``, readers' ``paused`` and worker_blocked, so the
 * consumer never waits for a reader that is copying payload. Order: lock,
 * then ring_lock. The reader list changes only under both. */
typedef struct recv_stream {
    int refs;
    pthread_mutex_t lock;
    pthread_cond_t idle_cond;  /* with lock: a reader stopped being busy */
    pthread_mutex_t ring_lock;
    pthread_cond_t ring_cond;  /* with ring_lock: heaps, end or log lines */
    tpool_t *tp;
    void *stop_hook;           /* ends the stream when the pool stops */
    int bug_compat;
    size_t max_heaps;
    size_t ring_heaps;
    size_t max_heap_size;
    spead_allocator *alloc;
    spead_memcpy_fn copy;
    live_heap *live;
    uint64_t next_seq;
    /* ring of finished heaps (grows past ring_heaps only transiently) */
    spead_heap **ring;
    size_t ring_cap, ring_head, ring_count;
    int efd;                   /* eventfd (semaphore): readable iff heap ready or ended */
    int stop_requested;        /* no new data accepted */
    int ended;                 /* ring closed: consumers get Stopped once drained */
    int stopping_readers;      /* a thread is closing the readers */
    spead_reader *readers;
    spead_recv_stats stats;
    spead_log_entry log[SPEAD_LOG_QUEUE];
    size_t log_head, log_count;
    uint64_t log_budget;       /* messages allowed before suppression */
    int64_t log_period_start;  /* when the budget was last refilled (ns) */
} recv_stream;

recv_stream *recv_stream_new(tpool_t *tp, int bug_compat, size_t max_heaps, size_t ring_heaps,
                             size_t max_heap_size, spead_allocator *alloc);
void recv_stream_incref(recv_stream *s);
void recv_stream_decref(recv_stream *s);
void recv_stream_set_allocator(recv_stream *s, spead_allocator *alloc);
void recv_stream_set_memcpy(recv_stream *s, int nontemporal);
/* Stop: close readers, flush live heaps, end the ring. Idempotent. */
void recv_stream_stop(recv_stream *s);
/* Pop a heap. timeout_ms < 0 waits forever, 0 does not wait. A stream whose
 * thread pool has stopped is stopped here (nothing can serve its readers).
 * Returns 1 with *out set, 0 when ended and drained, -1 on timeout. */
int recv_stream_pop(recv_stream *s, spead_heap **out, int timeout_ms);
/* Non-zero when log lines are waiting for recv_stream_take_logs. */
int recv_stream_logs_pending(recv_stream *s);
/* Copy out up to max queued log lines (oldest first); returns the count. */
size_t recv_stream_take_logs(recv_stream *s, spead_log_entry *out, size_t max);
void recv_stream_get_stats(recv_stream *s, spead_recv_stats *out);
int recv_stream_fd(recv_stream *s);

/* ---- used by readers; the stream lock must be held ---- */
enum {
    SPEAD_ADD_OK = 0,
    SPEAD_ADD_PAUSE = 1,   /* ring is full: the reader must pause */
    SPEAD_ADD_STOP = 2     /* the stream is stopping: the reader must finish */
};
/* Process one decoded packet. */
int recv_stream_add_packet_locked(recv_stream *s, const spead_packet *pkt);
/* Whether the ring is full (a hint; see recv_stream_pause_if_full). */
int recv_stream_ring_full(recv_stream *s);
/* Pause reader ``r`` if the ring is (still) full; returns 1 if paused. The
 * consumer resumes it once the ring has room. */
int recv_stream_pause_if_full(recv_stream *s, spead_reader *r);
void recv_stream_log_locked(recv_stream *s, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Register a reader (takes ownership). Returns -1 if the stream is stopped
 * (the reader is then destroyed). */
int recv_stream_add_reader(recv_stream *s, spead_reader *r);
/* A reader reached the end of its input: the stream stops. Call without the
 * lock. */
void recv_stream_end_of_input(recv_stream *s);

/* ---- readers ---- */
/* Feed a buffer (data must stay valid until the stream is destroyed or the
 * reader finishes; the Python layer keeps the owning object alive). */
int recv_add_buffer_reader(recv_stream *s, const uint8_t *data, size_t len);
/* Take ownership of a bound UDP socket fd. Returns 0 or -errno. */
int recv_add_udp_reader(recv_stream *s, int fd, size_t max_size);

/* Python logging levels */
#define SPEAD_LOG_DEBUG 10
#define SPEAD_LOG_INFO 20
#define SPEAD_LOG_WARNING 30

#endif
