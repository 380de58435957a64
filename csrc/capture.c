/* Live capture of UDP datagrams into a capture file (see capture.h).
 *
 * Per pass over the sockets, each is drained with recvmmsg (MSG_DONTWAIT)
 * for up to CAPTURE_ROUNDS batches; only when a pass finds nothing does
 * the capture wait, in poll(2). Each datagram's control messages give its
 * receive time (SCM_TIMESTAMPNS), the address it was sent to (IP_PKTINFO
 * or IPV6_PKTINFO: a multicast group, or which local address), the
 * socket's drop counter (SO_RXQ_OVFL) and, for a coalesced train, its
 * segment size (UDP_GRO). Records go into a large buffer; a full buffer
 * is handed to a writer thread and receiving goes on in the next free one,
 * so that a write that stalls (page cache allocation, writeback, a slow
 * pipe) does not stall receiving until every buffer is full.
 *
 * Into a regular file the buffers are written whole, each at its place in
 * the file (records may straddle two buffers), with direct I/O where the
 * file system takes it: the data goes from the buffers to the device
 * without being copied into the page cache, whose fresh pages cost more to
 * fill than the datagrams cost to receive. The flush that keeps the file
 * current writes the buffer being filled through the page cache, at the
 * same place, and the direct write of that buffer overwrites it once it is
 * full. SPEAD2_CAPTURE_DIRECT=0 in the environment turns direct I/O off. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "capture.h"
#include "env.h"
#include "pcap_write.h"

#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef SO_RXQ_OVFL
#define SO_RXQ_OVFL 40
#endif

#define CAPTURE_BATCH 64
/* Batches taken from one socket before the others get a turn. */
#define CAPTURE_ROUNDS 16
/* No UDP datagram, nor coalesced train, is longer. */
#define CAPTURE_SLOT 65536
/* Room for a timestamp, packet information, the drop counter and a
 * segment size, each with its header (about 130 bytes on 64-bit Linux). */
#define CAPTURE_CONTROL 256
/* Records are gathered into buffers of this size, written out whole by
 * the writer thread, which may lag by all but one of them. */
#define CAPTURE_OUT_BUFFER ((size_t) 4 << 20)
#define CAPTURE_OUT_BUFFERS 32
/* Buffer, length and file offset alignment for direct I/O. */
#define CAPTURE_ALIGN 4096
/* The longest record: a datagram with its pcap(ng) and frame headers. */
#define CAPTURE_MAX_RECORD (CAPTURE_SLOT + 256)

typedef struct {
    int fd;
    int family;
    pcap_udp local;         /* bound address and port: the destination without packet info */
    int gro;
    uint32_t drops;         /* the last drop counter the kernel reported */
} capture_socket;

/* Buffers go round: the one being filled (``out``), then the queue of
 * full ones (``queue[head..head+queued)``, written in order by the writer
 * thread, the first from ``written`` on), then the free ones. */
typedef struct {
    pthread_t thread;
    int started;
    pthread_mutex_t lock;
    pthread_cond_t wake;        /* for the writer: work, or time to end */
    pthread_cond_t done;        /* for the capture: a buffer was written, or a write failed */
    uint8_t *queue[CAPTURE_OUT_BUFFERS];
    size_t queue_len[CAPTURE_OUT_BUFFERS];
    uint64_t queue_off[CAPTURE_OUT_BUFFERS];    /* where each goes in a regular file */
    int head, queued;
    size_t written;             /* bytes of the first queued buffer already written */
    uint8_t *free_bufs[CAPTURE_OUT_BUFFERS];
    int n_free;
    int error;                  /* errno of a failed write: the writer waits for a retry */
    int retry;
    int writing;
    int stop;
} capture_writer;

struct capture {
    capture_socket *socks;
    struct pollfd *pfds;
    size_t n_socks;
    int out_fd;
    int format;
    uint8_t *out;
    size_t out_len;
    int positioned;         /* out_fd is a regular file: buffers go at their offsets */
    int direct_fd;          /* the file opened again for direct I/O (writer thread), or -1 */
    uint64_t out_off;       /* positioned: where ``out`` starts in the file */
    uint8_t *scratch;       /* positioned: a record that straddles two buffers */
    capture_writer w;
    uint8_t *slots;
    uint8_t *control;
    struct mmsghdr msgs[CAPTURE_BATCH];
    struct iovec iov[CAPTURE_BATCH];
    struct sockaddr_storage names[CAPTURE_BATCH];
    uint16_t ip_id;
    int failed;             /* socket index of the last failure, -1 for the file */
    capture_stats stats;
};

static uint64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* An address from the kernel into the fields of ``d`` (``src`` or
 * ``dst``), as IPv4 when it is an IPv4-mapped IPv6 address (an IPv4
 * datagram on a dual-stack socket). Returns the IP version. */
static int put_address(uint8_t out[16], const void *addr, int family)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (family == AF_INET) {
        memcpy(out, addr, 4);
        return 4;
    }
    if (memcmp(addr, mapped, 12) == 0) {
        memcpy(out, (const uint8_t *) addr + 12, 4);
        return 4;
    }
    memcpy(out, addr, 16);
    return 6;
}

static int set_option(int fd, int level, int name, char *err, size_t err_len, const char *what)
{
    int one = 1;
    if (setsockopt(fd, level, name, &one, sizeof(one)) == 0)
        return 0;
    snprintf(err, err_len, "cannot ask for %s on the socket: %s", what, strerror(errno));
    return -1;
}

static int setup_socket(capture_socket *s, int fd, int gro, char *err, size_t err_len)
{
    int type;
    socklen_t len = sizeof(type);
    struct sockaddr_storage name;
    socklen_t name_len = sizeof(name);
    s->fd = fd;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0
        || getsockname(fd, (struct sockaddr *) &name, &name_len) != 0) {
        snprintf(err, err_len, "not a socket: %s", strerror(errno));
        return -1;
    }
    s->family = name.ss_family;
    if (type != SOCK_DGRAM || (s->family != AF_INET && s->family != AF_INET6)) {
        snprintf(err, err_len, "not an IPv4 or IPv6 UDP socket");
        return -1;
    }
    if (s->family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *) &name;
        s->local.ip_version = put_address(s->local.dst, &a->sin_addr, AF_INET);
        s->local.dst_port = ntohs(a->sin_port);
    } else {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *) &name;
        s->local.ip_version = put_address(s->local.dst, &a->sin6_addr, AF_INET6);
        s->local.dst_port = ntohs(a->sin6_port);
    }
    if (s->local.dst_port == 0) {
        snprintf(err, err_len, "the socket is not bound to a port");
        return -1;
    }
    if (set_option(fd, SOL_SOCKET, SO_TIMESTAMPNS, err, err_len, "receive timestamps") != 0)
        return -1;
    if (s->family == AF_INET) {
        if (set_option(fd, IPPROTO_IP, IP_PKTINFO, err, err_len, "destination addresses") != 0)
            return -1;
    } else if (set_option(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, err, err_len,
                          "destination addresses") != 0) {
        return -1;
    }
    /* both optional: without them, drops are not counted, and datagrams
     * come one per receive */
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof(one));
    s->gro = gro && setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof(one)) == 0;
    return 0;
}

static uint8_t *alloc_buffer(void)
{
    void *p = NULL;
    return posix_memalign(&p, CAPTURE_ALIGN, CAPTURE_OUT_BUFFER) == 0 ? p : NULL;
}

/* A positioned write reached ``end``: the file is at least that long. */
static void note_file_end(capture *c, uint64_t end)
{
    uint64_t cur = __atomic_load_n(&c->stats.file_bytes, __ATOMIC_RELAXED);
    while (cur < end && !__atomic_compare_exchange_n(&c->stats.file_bytes, &cur, end, 0,
                                                     __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

/* Write ``len`` bytes of ``buf`` to the file, at ``off`` if positioned;
 * ``*done`` counts what has been written. Returns 0 or an errno. */
static int write_out(capture *c, const uint8_t *buf, size_t len, uint64_t off, size_t *done,
                     int may_direct)
{
    while (*done < len) {
        ssize_t n;
        if (!c->positioned) {
            n = write(c->out_fd, buf + *done, len - *done);
        } else {
            int fd = c->out_fd;
            if (may_direct && c->direct_fd >= 0 && *done % CAPTURE_ALIGN == 0
                && (len - *done) % CAPTURE_ALIGN == 0 && (off + *done) % CAPTURE_ALIGN == 0)
                fd = c->direct_fd;
            n = pwrite(fd, buf + *done, len - *done, (off_t) (off + *done));
            if (n < 0 && errno == EINVAL && fd == c->direct_fd) {
                /* the file system refuses direct I/O after all */
                close(c->direct_fd);
                c->direct_fd = -1;
                continue;
            }
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        *done += (size_t) n;
        if (c->positioned)
            note_file_end(c, off + *done);
        else
            __atomic_add_fetch(&c->stats.file_bytes, (uint64_t) n, __ATOMIC_RELAXED);
    }
    return 0;
}

/* Write the queued buffers, in order, until told to stop. */
static void *writer_main(void *arg)
{
    capture *c = arg;
    capture_writer *w = &c->w;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (!w->stop && (w->queued == 0 || (w->error && !w->retry)))
            pthread_cond_wait(&w->wake, &w->lock);
        if (w->stop)
            break;  /* what was not flushed is dropped, as the buffers are */
        w->error = 0;
        w->retry = 0;
        uint8_t *buf = w->queue[w->head];
        size_t len = w->queue_len[w->head];
        uint64_t off = w->queue_off[w->head];
        size_t done = w->written;
        w->writing = 1;
        pthread_mutex_unlock(&w->lock);
        int e = write_out(c, buf, len, off, &done, 1);
        pthread_mutex_lock(&w->lock);
        w->writing = 0;
        if (e) {
            /* the rest stays queued, for a later attempt */
            w->written = done;
            w->error = e;
        } else {
            w->written = 0;
            w->head = (w->head + 1) % CAPTURE_OUT_BUFFERS;
            w->queued--;
            w->free_bufs[w->n_free++] = buf;
        }
        pthread_cond_broadcast(&w->done);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

static int writer_start(capture *c)
{
    capture_writer *w = &c->w;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, NULL);
    pthread_cond_init(&w->done, NULL);
    for (int i = 0; i < CAPTURE_OUT_BUFFERS - 1; i++) {
        if (!(w->free_bufs[i] = alloc_buffer()))
            return -1;
        w->n_free++;
    }
    /* signals are for the capturing thread, whose waits they interrupt */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&w->thread, NULL, writer_main, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return -1;
    w->started = 1;
    return 0;
}

/* Queue the buffer being filled for writing and take a free one, waiting
 * for the writer if every buffer is full. Returns 0, or -errno if a write
 * failed (the records stay queued: capture_flush tries again). */
static int hand_over(capture *c)
{
    capture_writer *w = &c->w;
    int rc = 0;
    pthread_mutex_lock(&w->lock);
    if (w->error) {
        rc = -w->error;
    } else {
        if (c->out_len > 0) {
            int tail = (w->head + w->queued) % CAPTURE_OUT_BUFFERS;
            w->queue[tail] = c->out;
            w->queue_len[tail] = c->out_len;
            w->queue_off[tail] = c->out_off;
            w->queued++;
            c->out_off += c->out_len;
            c->out = NULL;
            c->out_len = 0;
            pthread_cond_signal(&w->wake);
        }
        while (!c->out && !w->error) {
            if (w->n_free > 0) {
                c->out = w->free_bufs[--w->n_free];
                break;
            }
            pthread_cond_wait(&w->done, &w->lock);
        }
        if (!c->out)
            rc = -w->error;
    }
    pthread_mutex_unlock(&w->lock);
    if (rc)
        c->failed = -1;
    return rc;
}

/* Whether the output is a regular file written from its start (not opened
 * for appending), which the buffers can go to at their offsets, and then
 * whether it can be opened a second time for direct I/O. */
static void open_positioned(capture *c)
{
    struct stat st;
    int flags = fcntl(c->out_fd, F_GETFL);
    if (fstat(c->out_fd, &st) != 0 || !S_ISREG(st.st_mode) || flags < 0 || (flags & O_APPEND)
        || lseek(c->out_fd, 0, SEEK_CUR) != 0)
        return;
    c->positioned = 1;
    if (!spead_env_allows("SPEAD2_CAPTURE_DIRECT"))
        return;
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", c->out_fd);
    c->direct_fd = open(path, O_WRONLY | O_DIRECT | O_CLOEXEC);
}

capture *capture_create(const int *fds, size_t n_fds, int out_fd, int format, int gro,
                        char *err, size_t err_len)
{
    capture *c = calloc(1, sizeof(*c));
    if (c)
        c->direct_fd = -1;
    if (!c || !(c->socks = calloc(n_fds ? n_fds : 1, sizeof(*c->socks)))
        || !(c->pfds = calloc(n_fds ? n_fds : 1, sizeof(*c->pfds)))
        || !(c->out = alloc_buffer())
        || !(c->scratch = malloc(CAPTURE_MAX_RECORD))
        || !(c->slots = malloc((size_t) CAPTURE_BATCH * CAPTURE_SLOT))
        || !(c->control = malloc((size_t) CAPTURE_BATCH * CAPTURE_CONTROL))
        || writer_start(c) != 0) {
        snprintf(err, err_len, "out of memory");
        capture_destroy(c);
        return NULL;
    }
    c->n_socks = n_fds;
    c->out_fd = out_fd;
    c->format = format;
    open_positioned(c);
    for (size_t i = 0; i < n_fds; i++) {
        if (setup_socket(&c->socks[i], fds[i], gro, err, err_len) != 0) {
            capture_destroy(c);
            return NULL;
        }
        c->pfds[i].fd = fds[i];
        c->pfds[i].events = POLLIN;
    }
    for (int i = 0; i < CAPTURE_BATCH; i++) {
        c->iov[i].iov_base = c->slots + (size_t) i * CAPTURE_SLOT;
        c->iov[i].iov_len = CAPTURE_SLOT;
        struct msghdr *h = &c->msgs[i].msg_hdr;
        h->msg_name = &c->names[i];
        h->msg_iov = &c->iov[i];
        h->msg_iovlen = 1;
        h->msg_control = c->control + (size_t) i * CAPTURE_CONTROL;
    }
    c->out_len = pcapw_file_header(format, c->out);
    return c;
}

void capture_destroy(capture *c)
{
    if (!c)
        return;
    capture_writer *w = &c->w;
    if (w->started) {
        pthread_mutex_lock(&w->lock);
        w->stop = 1;
        pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->lock);
        pthread_join(w->thread, NULL);
    }
    for (int i = 0; i < w->queued; i++)
        free(w->queue[(w->head + i) % CAPTURE_OUT_BUFFERS]);
    for (int i = 0; i < w->n_free; i++)
        free(w->free_bufs[i]);
    if (w->started) {
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->wake);
        pthread_cond_destroy(&w->done);
    }
    if (c->direct_fd >= 0)
        close(c->direct_fd);
    free(c->socks);
    free(c->pfds);
    free(c->out);
    free(c->scratch);
    free(c->slots);
    free(c->control);
    free(c);
}

int capture_flush(capture *c)
{
    capture_writer *w = &c->w;
    pthread_mutex_lock(&w->lock);
    if (w->error) {
        /* try again what failed before */
        w->retry = 1;
        pthread_cond_signal(&w->wake);
        while (w->retry || w->writing)
            pthread_cond_wait(&w->done, &w->lock);
    }
    pthread_mutex_unlock(&w->lock);
    int rc = c->positioned ? 0 : hand_over(c);
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&w->lock);
    while (w->queued > 0 && !w->error)
        pthread_cond_wait(&w->done, &w->lock);
    rc = -w->error;
    pthread_mutex_unlock(&w->lock);
    if (rc == 0 && c->positioned && c->out) {
        /* the buffer being filled goes out too, through the page cache; it
         * stays the one being filled, and is written again once full */
        size_t done = 0;
        int e = write_out(c, c->out, c->out_len, c->out_off, &done, 0);
        if (e) {
            c->failed = -1;
            return -e;
        }
        lseek(c->out_fd, (off_t) (c->out_off + c->out_len), SEEK_SET);
    }
    if (rc)
        c->failed = -1;
    return rc;
}

/* One datagram (or one segment of a train) into the buffer. */
static int record(capture *c, const pcap_udp *d, uint64_t ts_ns)
{
    size_t need = pcapw_record_size(c->format, d->ip_version, d->payload_len);
    if (c->positioned && c->out && CAPTURE_OUT_BUFFER - c->out_len < need) {
        /* buffers are filled to the last byte: this record straddles two */
        size_t room = CAPTURE_OUT_BUFFER - c->out_len;
        pcapw_record(c->format, d, ts_ns, c->ip_id++, c->scratch);
        memcpy(c->out + c->out_len, c->scratch, room);
        size_t before = c->out_len;
        c->out_len = CAPTURE_OUT_BUFFER;
        int rc = hand_over(c);
        if (rc != 0) {
            /* not handed over: the record is not in the file at all */
            c->out_len = before;
            return rc;
        }
        memcpy(c->out, c->scratch + room, need - room);
        c->out_len = need - room;
    } else {
        if (!c->out || CAPTURE_OUT_BUFFER - c->out_len < need) {
            int rc = hand_over(c);
            if (rc != 0)
                return rc;
        }
        c->out_len += pcapw_record(c->format, d, ts_ns, c->ip_id++, c->out + c->out_len);
    }
    c->stats.packets++;
    c->stats.bytes += d->payload_len;
    return 0;
}

/* The datagram (or train) in slot ``i``, received on ``s``: its control
 * messages read, then recorded, a segment at a time, until ``limit``. */
static int record_slot(capture *c, capture_socket *s, int i, uint64_t limit, uint64_t now_ns)
{
    struct msghdr *h = &c->msgs[i].msg_hdr;
    size_t len = c->msgs[i].msg_len;
    pcap_udp d = s->local;
    uint64_t ts_ns = now_ns;
    size_t segment = 0;
    for (struct cmsghdr *m = CMSG_FIRSTHDR(h); m; m = CMSG_NXTHDR(h, m)) {
        if (m->cmsg_level == SOL_SOCKET && m->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(m), sizeof(ts));
            ts_ns = (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
        } else if (m->cmsg_level == SOL_SOCKET && m->cmsg_type == SO_RXQ_OVFL) {
            memcpy(&s->drops, CMSG_DATA(m), sizeof(s->drops));
        } else if (m->cmsg_level == IPPROTO_IP && m->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo info;
            memcpy(&info, CMSG_DATA(m), sizeof(info));
            put_address(d.dst, &info.ipi_addr, AF_INET);
        } else if (m->cmsg_level == IPPROTO_IPV6 && m->cmsg_type == IPV6_PKTINFO) {
            struct in6_pktinfo info;
            memcpy(&info, CMSG_DATA(m), sizeof(info));
            put_address(d.dst, &info.ipi6_addr, AF_INET6);
        } else if (m->cmsg_level == SOL_UDP && m->cmsg_type == UDP_GRO) {
            int size;
            memcpy(&size, CMSG_DATA(m), sizeof(size));
            segment = size > 0 ? (size_t) size : 0;
        }
    }
    const struct sockaddr_storage *from = &c->names[i];
    if (from->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *) from;
        d.ip_version = put_address(d.src, &a->sin_addr, AF_INET);
        d.src_port = ntohs(a->sin_port);
    } else {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *) from;
        d.ip_version = put_address(d.src, &a->sin6_addr, AF_INET6);
        d.src_port = ntohs(a->sin6_port);
    }
    if (h->msg_flags & MSG_TRUNC)
        c->stats.truncated++;
    if (segment == 0 || segment > len)
        segment = len ? len : 1;    /* an empty datagram is one record too */
    const uint8_t *data = c->iov[i].iov_base;
    size_t off = 0;
    do {
        if (limit && c->stats.packets >= limit)
            break;
        d.payload = data + off;
        d.payload_len = len - off < segment ? len - off : segment;
        int rc = record(c, &d, ts_ns);
        if (rc != 0)
            return rc;
        off += d.payload_len;
    } while (off < len);
    return 0;
}

/* One batch from socket ``s``: the number of datagrams (or trains)
 * received, 0 if none was waiting, or -errno. */
static int receive_batch(capture *c, capture_socket *s, uint64_t limit)
{
    unsigned int vlen = CAPTURE_BATCH;
    /* without coalescing, a message is one datagram: take no more than needed */
    if (limit && !s->gro && limit - c->stats.packets < vlen)
        vlen = (unsigned int) (limit - c->stats.packets);
    for (unsigned int i = 0; i < vlen; i++) {
        c->msgs[i].msg_hdr.msg_namelen = sizeof(c->names[i]);
        c->msgs[i].msg_hdr.msg_controllen = CAPTURE_CONTROL;
        c->msgs[i].msg_hdr.msg_flags = 0;
    }
    int n = recvmmsg(s->fd, c->msgs, vlen, MSG_DONTWAIT, NULL);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -errno;
    uint64_t now_ns = realtime_ns();     /* for a datagram without a timestamp */
    for (int i = 0; i < n; i++) {
        int rc = record_slot(c, s, i, limit, now_ns);
        if (rc != 0)
            return rc;
    }
    return n;
}

int capture_run(capture *c, uint64_t limit, int timeout_ms)
{
    int64_t deadline = monotonic_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        int got = 0;
        for (size_t i = 0; i < c->n_socks; i++) {
            for (int round = 0; round < CAPTURE_ROUNDS; round++) {
                if (limit && c->stats.packets >= limit)
                    return CAPTURE_LIMIT;
                int n = receive_batch(c, &c->socks[i], limit);
                if (n < 0) {
                    c->failed = (int) i;
                    return n;
                }
                got |= n > 0;
                if (n < CAPTURE_BATCH)
                    break;  /* drained */
            }
        }
        if (limit && c->stats.packets >= limit)
            return CAPTURE_LIMIT;
        int64_t left = deadline - monotonic_ms();
        if (left <= 0)
            return CAPTURE_PERIOD;
        if (got)
            continue;
        int rc = poll(c->pfds, c->n_socks, (int) left);
        if (rc < 0) {
            if (errno == EINTR)
                return CAPTURE_SIGNAL;
            c->failed = 0;
            return -errno;
        }
        if (rc == 0)
            return CAPTURE_PERIOD;
    }
}

void capture_get_stats(const capture *c, capture_stats *out)
{
    *out = c->stats;
    out->drops = 0;
    for (size_t i = 0; i < c->n_socks; i++)
        out->drops += c->socks[i].drops;
}

int capture_failed_socket(const capture *c)
{
    return c->failed;
}
