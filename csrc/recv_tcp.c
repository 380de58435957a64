/* TCP reader: SPEAD packets back to back on one accepted connection.
 *
 * The reader starts by watching a listening socket. When a connection
 * arrives it accepts it, closes the listener and watches the connection
 * instead; when the peer closes, the stream ends.
 *
 * A byte stream has no packet boundaries, so they come from the SPEAD
 * headers: a packet's extent is its header, its item pointers and the
 * PAYLOAD_LENGTH they give. Bytes are read into a buffer; complete packets
 * are decoded from it in place, and the bytes of a partial one wait for
 * the next read. Whatever the input, the reader keeps framing:
 *
 * - a header that is not SPEAD, or has no PAYLOAD_LENGTH, skips 8 bytes
 *   and framing resumes there (as the reference implementation does); a
 *   run of such skips is one bad packet;
 * - a packet of known extent over max_size is skipped without being
 *   buffered whole, however many reads it spans (one too-large packet);
 * - a packet of known extent that does not decode is skipped (one bad
 *   packet);
 * - bytes left when the peer closes are dropped (one bad packet, unless
 *   they belong to a run of bad headers already counted).
 *
 * The buffer holds at most one packet of max_size (or the largest header
 * and pointer block, 512 KiB, if that is larger) plus a read's worth. It
 * starts with room for a packet of max_size but at most 512 KiB, and grows
 * only when a larger packet needs it.
 *
 * TCP loses nothing, so a full ring simply pauses the reader: the kernel's
 * receive window then fills and holds the sender back.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "recv_watch.h"

/* Free space asked of each recv. On loopback the kernel hands over up to
 * its whole receive buffer at once, so a large read costs fewer system
 * calls per byte. */
#define TCP_READ_CHUNK (256 * 1024)
/* Reads per readiness event before other work gets a turn (the socket is
 * still readable then, so the re-armed watch fires again). */
#define TCP_ROUNDS 16
/* The largest header and item pointer block (the item count is 16 bits):
 * the bytes needed to find any packet's extent. */
#define TCP_POINTERS_LIMIT (SPEAD_HEADER_SIZE + (size_t) 0xffff * SPEAD_POINTER_SIZE)

typedef struct {
    spead_watched_reader w;
    size_t max_size;
    int listening;            /* the fd is still the listening socket */
    uint8_t *buf;
    size_t cap;
    size_t head, tail;        /* buf[head, tail) is read but not yet framed */
    size_t need;              /* bytes from head that framing waits for (0: none) */
    uint64_t to_skip;         /* bytes of an oversized packet still to skip */
    uint64_t offset;          /* connection bytes before buf[0], for log lines */
    int in_garbage;           /* inside a run of bad headers, already counted */
    int eof;                  /* nothing follows the buffered bytes */
} tcp_reader;

enum { EXTENT_KNOWN, EXTENT_NEED_MORE, EXTENT_BAD_HEADER };

/* Find how many bytes the packet starting at ``p`` occupies. Returns
 * EXTENT_KNOWN with ``*extent`` set; EXTENT_NEED_MORE with ``*need`` the
 * number of bytes (more than ``avail``) required to tell; or
 * EXTENT_BAD_HEADER when ``p`` cannot start a packet of known extent. Like
 * spead_decode_packet, the last PAYLOAD_LENGTH pointer counts. */
static int packet_extent(const uint8_t *p, size_t avail, uint64_t *extent, size_t *need)
{
    if (avail < SPEAD_HEADER_SIZE) {
        *need = SPEAD_HEADER_SIZE;
        return EXTENT_NEED_MORE;
    }
    int addr_bytes = p[3];
    if (p[0] != SPEAD_MAGIC || p[1] != SPEAD_VERSION || p[2] + addr_bytes != 8
        || addr_bytes < 1 || addr_bytes > 7)
        return EXTENT_BAD_HEADER;
    size_t pointers_end = SPEAD_HEADER_SIZE + (size_t) ((p[6] << 8) | p[7]) * SPEAD_POINTER_SIZE;
    if (avail < pointers_end) {
        *need = pointers_end;
        return EXTENT_NEED_MORE;
    }
    int hab = addr_bytes * 8;
    int found = 0;
    uint64_t length = 0;
    for (size_t at = SPEAD_HEADER_SIZE; at < pointers_end; at += SPEAD_POINTER_SIZE) {
        uint64_t ptr = spead_load_be64(p + at);
        if (spead_pointer_immediate(ptr) && spead_pointer_id(ptr, hab) == SPEAD_PAYLOAD_LENGTH_ID) {
            length = spead_pointer_address(ptr, hab);
            found = 1;
        }
    }
    if (!found)
        return EXTENT_BAD_HEADER;
    *extent = pointers_end + length;  /* below 2^57: no overflow */
    return EXTENT_KNOWN;
}

/* The end of the input: the peer closed (or the connection failed). */
static int tcp_input_ended(tcp_reader *r)
{
    recv_stream *s = r->w.base.stream;
    size_t left = r->tail - r->head;
    if (left > 0 && !r->in_garbage) {
        recv_stream_count_locked(s, SPEAD_STAT_BAD_PACKETS);
        recv_stream_log(s, SPEAD_LOG_INFO,
                        "TCP connection closed in the middle of a packet: %zu bytes dropped", left);
    }
    r->head = r->tail;
    return RECV_READ_END;
}

static int tcp_next(spead_reader *base, spead_packet *pkt)
{
    tcp_reader *r = (tcp_reader *) base;
    recv_stream *s = base->stream;
    for (;;) {
        size_t avail = r->tail - r->head;
        if (r->to_skip > 0) {
            size_t n = r->to_skip < avail ? (size_t) r->to_skip : avail;
            r->head += n;
            r->to_skip -= n;
            if (r->to_skip > 0) {
                r->need = 0;  /* whatever comes next is skipped: any read size will do */
                return r->eof ? RECV_READ_END : RECV_READ_NONE;
            }
            continue;
        }
        if (avail == 0) {
            r->need = 0;
            return r->eof ? RECV_READ_END : RECV_READ_NONE;
        }
        const uint8_t *p = r->buf + r->head;
        uint64_t extent = 0;
        size_t need = 0;
        int found = packet_extent(p, avail, &extent, &need);
        if (found == EXTENT_BAD_HEADER) {
            if (!r->in_garbage) {
                r->in_garbage = 1;
                recv_stream_count_locked(s, SPEAD_STAT_BAD_PACKETS);
                recv_stream_log(s, SPEAD_LOG_INFO,
                                "TCP: no SPEAD header at byte %llu: skipping 8 bytes at a time",
                                (unsigned long long) (r->offset + r->head));
            }
            r->head += SPEAD_HEADER_SIZE;  /* a bad header is only found in 8 bytes or more */
            continue;
        }
        if (found == EXTENT_KNOWN) {
            r->in_garbage = 0;
            if (extent > r->max_size) {
                recv_stream_count_locked(s, SPEAD_STAT_TOO_LARGE_PACKETS);
                recv_stream_log(s, SPEAD_LOG_INFO,
                                "packet rejected: larger than max_size (%llu > %zu bytes)",
                                (unsigned long long) extent, r->max_size);
                r->to_skip = extent;
                continue;
            }
            if (avail < extent)
                need = (size_t) extent;  /* <= max_size, so it fits a size_t */
        }
        if (need > 0) {
            if (r->eof)
                return tcp_input_ended(r);
            r->need = need;
            return RECV_READ_NONE;
        }
        r->need = 0;
        int st = spead_decode_packet(p, (size_t) extent, pkt);
        r->head += (size_t) extent;
        if (st != SPEAD_PACKET_OK) {
            recv_stream_count_locked(s, SPEAD_STAT_BAD_PACKETS);
            recv_stream_log(s, SPEAD_LOG_INFO, "packet rejected: %s",
                            spead_packet_status_string(st));
            return RECV_READ_SKIP;
        }
        return RECV_READ_PACKET;
    }
}

/* Make room for a read after the framed bytes: move the unframed ones to
 * the front when little space is left, and grow the buffer when the packet
 * being framed needs more than it holds. Returns 0, or -1 when out of
 * memory. */
static int make_room(tcp_reader *r)
{
    size_t want = r->need + TCP_READ_CHUNK;
    if (r->cap >= want && r->cap - r->tail >= TCP_READ_CHUNK)
        return 0;
    size_t left = r->tail - r->head;
    memmove(r->buf, r->buf + r->head, left);
    r->offset += r->head;
    r->head = 0;
    r->tail = left;
    if (r->cap < want) {
        uint8_t *grown = realloc(r->buf, want);
        if (!grown)
            return -1;
        r->buf = grown;
        r->cap = want;
    }
    return 0;
}

/* Errors of accept that leave the listener usable (see accept(2)). */
static int accept_error_is_transient(int e)
{
    switch (e) {
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
    case EINTR:
    case ECONNABORTED:
    case EPROTO:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
        return 1;
    default:
        return 0;
    }
}

enum { ACCEPT_WAIT, ACCEPT_DONE, ACCEPT_FAILED };

/* Accept the connection and put it in the listener's place. The listener's
 * watch is the one running this, so it is removed here and the
 * connection's is added by the caller once this thread has left the reader
 * (its first event may run on another worker at once). */
static int tcp_accept(tcp_reader *r)
{
    recv_stream *s = r->w.base.stream;
    int fd = accept4(r->w.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (accept_error_is_transient(e))
            return ACCEPT_WAIT;
        recv_stream_log(s, SPEAD_LOG_WARNING, "TCP accept failed: %s", strerror(e));
        return ACCEPT_FAILED;
    }
    /* the watch handle and fd change under the stream lock, where
     * watched_reader_close looks for them */
    pthread_mutex_lock(&s->lock);
    int64_t listen_watch = r->w.watch;
    int listen_fd = r->w.fd;
    r->w.watch = -1;
    r->w.fd = fd;
    r->w.what = "TCP connection";
    r->listening = 0;
    pthread_mutex_unlock(&s->lock);
    if (listen_watch >= 0)
        tpool_unwatch(s->tp, listen_watch);
    close(listen_fd);
    recv_stream_log(s, SPEAD_LOG_DEBUG, "TCP reader: connection accepted");
    return ACCEPT_DONE;
}

/* Frame and assemble what is buffered, then read and assemble until the
 * connection is drained (or the rounds run out). Returns 1 when the watch
 * should be re-armed. */
static int tcp_process(spead_watched_reader *w)
{
    tcp_reader *r = (tcp_reader *) w;
    recv_stream *s = w->base.stream;
    if (!watched_reader_enter(w))
        return 0;
    if (r->listening) {
        int accepted = tcp_accept(r);
        if (accepted != ACCEPT_FAILED) {
            watched_reader_leave(w);
            if (accepted == ACCEPT_WAIT)
                return 1;
            watched_reader_start(&w->base);
            return 0;
        }
        r->eof = 1;  /* no connection will come: the batch below ends the stream */
    }
    int rearm = 1;
    for (int round = 0;; round++) {
        /* first what a paused batch left behind, then what each read brings */
        int res = recv_stream_run_batch(s, &w->base, SIZE_MAX);
        if (res == RECV_BATCH_DONE || res == RECV_BATCH_PAUSED) {
            rearm = 0;
            break;
        }
        if (round == TCP_ROUNDS)
            break;
        if (make_room(r) != 0) {
            recv_stream_log(s, SPEAD_LOG_WARNING,
                            "TCP reader: out of memory for a %zu-byte packet: the stream ends",
                            r->need);
            r->eof = 1;
            continue;
        }
        size_t space = r->cap - r->tail;
        ssize_t got = recv(w->fd, r->buf + r->tail, space, MSG_DONTWAIT);
        if (got > 0) {
            r->tail += (size_t) got;
            if ((size_t) got < space)
                round = TCP_ROUNDS - 1;  /* probably drained: assemble, then wait for readiness */
        } else if (got == 0) {
            r->eof = 1;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        } else if (errno != EINTR) {
            recv_stream_log(s, SPEAD_LOG_WARNING, "TCP receive failed: %s: the stream ends",
                            strerror(errno));
            r->eof = 1;
        }
    }
    watched_reader_leave(w);
    return rearm;
}

static void tcp_destroy(spead_reader *base)
{
    tcp_reader *r = (tcp_reader *) base;
    if (r->w.fd >= 0)
        close(r->w.fd);
    free(r->buf);
    free(r);
}

static const spead_reader_ops tcp_ops = {
    .next = tcp_next,
    .start = watched_reader_start,
    .resume = watched_reader_resume,
    .close = watched_reader_close,
    .destroy = tcp_destroy,
    .lossy = 0,
};

int recv_add_tcp_reader(recv_stream *s, int listen_fd, size_t max_size)
{
    tcp_reader *r = calloc(1, sizeof(*r));
    size_t first = (max_size < TCP_POINTERS_LIMIT ? max_size : TCP_POINTERS_LIMIT);
    if (r)
        r->buf = malloc(first + TCP_READ_CHUNK);
    if (!r || !r->buf) {
        close(listen_fd);
        free(r);
        return -ENOMEM;
    }
    watched_reader_init(&r->w, &tcp_ops, listen_fd, tcp_process, "TCP listening socket");
    r->cap = first + TCP_READ_CHUNK;
    r->max_size = max_size;
    r->listening = 1;
    /* a connection that goes away before accept must not block a worker */
    int flags = fcntl(listen_fd, F_GETFL);
    fcntl(listen_fd, F_SETFL, flags | O_NONBLOCK);
    if (recv_stream_add_reader(s, &r->w.base) != 0)
        return -ESHUTDOWN;
    return 0;
}
