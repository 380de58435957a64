#include "send_udp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Packets gathered before a flush; gather pieces per packet (header
 * included): a packet whose payload spans more items than that is copied
 * into the arena instead. */
#define UDP_MAX_PACKETS 256
#define UDP_IOV_PER_PACKET 16
/* Packets with at most this much payload are copied whole into the arena:
 * one piece per datagram costs the kernel less than gathering several. */
#define UDP_COPY_MAX 2048
/* Headers and copied payloads, bump-allocated between flushes. */
#define UDP_ARENA_SIZE (64 * 1024)
/* UDP generic segmentation offload: one send carries up to this many
 * equal-sized datagrams, within one maximal UDP payload. */
#define UDP_GSO_MAX_SEGMENTS 64
#define UDP_GSO_MAX_BYTES 65507
/* No datagram can be larger; bigger packets fail with EMSGSIZE unsent. */
#define UDP_PACKET_LIMIT ((size_t) 1 << 17)
/* Give up on a socket that stays unwritable this long. */
#define UDP_STALL_NS INT64_C(10000000000)

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

typedef struct {
    size_t iov_start;
    int n_iov;
    size_t length;
    size_t dest;              /* destination: the first substream with its address */
} udp_packet;

typedef union {
    char buf[CMSG_SPACE(sizeof(uint16_t))];
    struct cmsghdr align;
} gso_cmsg;

typedef struct {
    int fd;
    size_t n_addrs;               /* one destination per substream */
    struct sockaddr_storage *addrs;
    size_t *dest;                 /* per substream: first substream with that address */
    socklen_t addrlen;            /* all have the socket's family */
    size_t packet_size;
    int use_gso;              /* cleared if the kernel refuses segmentation */
    size_t arena_size;
    size_t arena_used;
    uint8_t *arena;
    int n_packets;
    size_t n_iov;
    udp_packet packets[UDP_MAX_PACKETS];
    struct iovec iov[UDP_MAX_PACKETS * UDP_IOV_PER_PACKET];
    /* the same pieces, rearranged so that each message's are contiguous */
    struct iovec msg_iov[UDP_MAX_PACKETS * UDP_IOV_PER_PACKET];
    int ordered[UDP_MAX_PACKETS];     /* packets in the order messages take them */
    struct mmsghdr msgs[UDP_MAX_PACKETS];
    gso_cmsg cmsgs[UDP_MAX_PACKETS];
} udp_writer;

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Order the gathered packets for sending.  With segmentation offload, the
 * packets of one destination go together (each destination keeps their
 * order, and destinations come in order of their first packet), so that
 * interleaved substreams still make runs for one send each; a receiver
 * sees the same datagrams in the same order either way.  Without it, the
 * order is left as it was. */
static void order_packets(udp_writer *w)
{
    int n = w->n_packets;
    if (!w->use_gso) {
        for (int i = 0; i < n; i++)
            w->ordered[i] = i;
        return;
    }
    int next[UDP_MAX_PACKETS];
    int head[UDP_MAX_PACKETS], tail[UDP_MAX_PACKETS];
    size_t slot_dest[UDP_MAX_PACKETS];
    int n_slots = 0;
    for (int i = 0; i < n; i++) {
        size_t d = w->packets[i].dest;
        int k = n_slots - 1;
        /* usually the same destination as a recent packet: search backwards */
        while (k >= 0 && slot_dest[k] != d)
            k--;
        next[i] = -1;
        if (k < 0) {
            k = n_slots++;
            slot_dest[k] = d;
            head[k] = i;
        } else {
            next[tail[k]] = i;
        }
        tail[k] = i;
    }
    int pos = 0;
    for (int k = 0; k < n_slots; k++)
        for (int i = head[k]; i >= 0; i = next[i])
            w->ordered[pos++] = i;
}

/* Build messages for the packets ordered[start..n_packets): with GSO, runs
 * of equal-sized packets to one destination (optionally ending with one
 * shorter packet) share one message.  Returns the number of messages;
 * msg_first[m] is the position in ``ordered`` of the first packet of
 * message m. */
static int build_messages(udp_writer *w, int start, int *msg_first)
{
    int n_msgs = 0;
    int pos = start;
    size_t iov_pos = 0;
    while (pos < w->n_packets) {
        const udp_packet *p = &w->packets[w->ordered[pos]];
        size_t seg = p->length;
        int count = 1;
        size_t total = seg;
        int n_iov = p->n_iov;
        if (w->use_gso && seg * 2 <= UDP_GSO_MAX_BYTES) {
            while (pos + count < w->n_packets && count < UDP_GSO_MAX_SEGMENTS) {
                const udp_packet *q = &w->packets[w->ordered[pos + count]];
                if (q->dest != p->dest || q->length > seg || total + q->length > UDP_GSO_MAX_BYTES
                    || n_iov + q->n_iov > IOV_MAX)
                    break;
                count++;
                total += q->length;
                n_iov += q->n_iov;
                if (q->length < seg)
                    break;
            }
        }
        struct msghdr *m = &w->msgs[n_msgs].msg_hdr;
        m->msg_name = &w->addrs[p->dest];
        m->msg_namelen = w->addrlen;
        m->msg_iov = &w->msg_iov[iov_pos];
        m->msg_iovlen = (size_t) n_iov;
        m->msg_flags = 0;
        for (int j = 0; j < count; j++) {
            const udp_packet *q = &w->packets[w->ordered[pos + j]];
            memcpy(&w->msg_iov[iov_pos], &w->iov[q->iov_start], q->n_iov * sizeof(struct iovec));
            iov_pos += (size_t) q->n_iov;
        }
        if (count > 1) {
            gso_cmsg *c = &w->cmsgs[n_msgs];
            memset(c, 0, sizeof(*c));
            m->msg_control = c->buf;
            m->msg_controllen = sizeof(c->buf);
            struct cmsghdr *cm = CMSG_FIRSTHDR(m);
            cm->cmsg_level = SOL_UDP;
            cm->cmsg_type = UDP_SEGMENT;
            cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
            uint16_t gso_size = (uint16_t) seg;
            memcpy(CMSG_DATA(cm), &gso_size, sizeof(gso_size));
        } else {
            m->msg_control = NULL;
            m->msg_controllen = 0;
        }
        msg_first[n_msgs++] = pos;
        pos += count;
    }
    return n_msgs;
}

static int flush(udp_writer *w)
{
    if (w->n_packets == 0)
        return 0;
    int msg_first[UDP_MAX_PACKETS];
    order_packets(w);
    int n_msgs = build_messages(w, 0, msg_first);
    int sent = 0;
    int64_t stalled_since = -1;
    int error = 0;
    while (sent < n_msgs) {
        int r = sendmmsg(w->fd, w->msgs + sent, (unsigned int) (n_msgs - sent), 0);
        if (r > 0) {
            sent += r;
            stalled_since = -1;
            continue;
        }
        int e = r < 0 ? errno : EIO;
        if (e == EINTR)
            continue;
        if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS) {
            int64_t now = mono_ns();
            if (stalled_since < 0)
                stalled_since = now;
            else if (now - stalled_since > UDP_STALL_NS) {
                error = e;
                break;
            }
            if (e == ENOBUFS) {
                struct timespec ts = {0, 50000};
                nanosleep(&ts, NULL);
            } else {
                struct pollfd pfd = {w->fd, POLLOUT, 0};
                poll(&pfd, 1, 100);
            }
            continue;
        }
        if (w->use_gso && w->msgs[sent].msg_hdr.msg_controllen != 0
            && (e == EINVAL || e == EIO || e == ENOPROTOOPT || e == EOPNOTSUPP
                || e == EMSGSIZE)) {
            /* The route cannot segment (e.g. the MTU is smaller than a
             * packet): send one datagram per packet from here on. */
            w->use_gso = 0;
            n_msgs = build_messages(w, msg_first[sent], msg_first);
            sent = 0;
            continue;
        }
        error = e;
        break;
    }
    w->n_packets = 0;
    w->n_iov = 0;
    w->arena_used = 0;
    return error;
}

static int udp_write_group(send_stream *s, send_req *req)
{
    udp_writer *w = s->writer;
    /* A packet too large for any datagram is refused before anything of
     * the group goes (the arena could not hold its copy either). */
    for (size_t i = 0; i < req->n_heaps; i++) {
        const send_layout *L = &req->heaps[i].layout;
        if (L->packet_size > w->packet_size && L->total_bytes > w->packet_size)
            return EMSGSIZE;
    }
    send_group_iter g;
    uint64_t packets = send_req_start(req, &g);
    for (uint64_t k = 0; k < packets; k++) {
        if (send_stream_pace_due(s)) {
            /* the burst goes out, then the sender waits */
            int e = flush(w);
            if (e)
                return e;
            send_stream_pace_wait(s);
        }
        if (w->n_packets == UDP_MAX_PACKETS || w->arena_size - w->arena_used < w->packet_size) {
            int e = flush(w);
            if (e)
                return e;
        }
        uint8_t *hdr = w->arena + w->arena_used;
        struct iovec *iov = w->iov + w->n_iov;
        size_t payload, hdr_len;
        size_t h = send_group_next(&g, hdr, &hdr_len, &payload);
        if (h == SIZE_MAX)
            break;
        send_packetizer *pz = &req->pz[h];
        int n_iov;
        /* A small payload is cheaper to copy than for the kernel to gather. */
        int segs = payload <= UDP_COPY_MAX ? -1
                 : send_packetizer_segments(pz, payload, iov + 1, UDP_IOV_PER_PACKET - 1);
        iov[0].iov_base = hdr;
        if (segs >= 0) {
            iov[0].iov_len = hdr_len;
            n_iov = segs + 1;
            w->arena_used += (hdr_len + 7) & ~(size_t) 7;
        } else {
            send_packetizer_copy(pz, hdr + hdr_len, payload);
            iov[0].iov_len = hdr_len + payload;
            n_iov = 1;
            w->arena_used += (hdr_len + payload + 7) & ~(size_t) 7;
        }
        udp_packet *p = &w->packets[w->n_packets++];
        p->iov_start = w->n_iov;
        p->n_iov = n_iov;
        p->length = hdr_len + payload;
        p->dest = w->dest[req->heaps[h].substream];
        w->n_iov += (size_t) n_iov;
        send_stream_pace_account(s, p->length, &req->heaps[h]);
    }
    return flush(w);
}

static void udp_destroy(send_stream *s)
{
    udp_writer *w = s->writer;
    if (w) {
        if (w->fd >= 0)
            close(w->fd);
        free(w->arena);
        free(w->addrs);
        free(w->dest);
        free(w);
    }
}

static const send_writer_ops udp_ops = {udp_write_group, udp_destroy};

send_stream *send_udp_stream_new(tpool_t *tp, int fd, const struct sockaddr_storage *addrs,
                                 size_t n_addrs, socklen_t addrlen, const send_config *config)
{
    udp_writer *w = calloc(1, sizeof(*w));
    if (!w || n_addrs == 0 || addrlen > sizeof(struct sockaddr_storage)) {
        free(w);
        close(fd);
        return NULL;
    }
    w->fd = fd;
    w->addrs = malloc(n_addrs * sizeof(*addrs));
    w->dest = malloc(n_addrs * sizeof(size_t));
    if (w->addrs && w->dest) {
        memcpy(w->addrs, addrs, n_addrs * sizeof(*addrs));
        /* Substreams with the same address are one destination, whose
         * packets must keep their order. */
        for (size_t i = 0; i < n_addrs; i++) {
            w->dest[i] = i;
            for (size_t j = 0; j < i; j++)
                if (memcmp(&addrs[i], &addrs[j], addrlen) == 0) {
                    w->dest[i] = j;
                    break;
                }
        }
    }
    w->n_addrs = n_addrs;
    w->addrlen = addrlen;
    w->packet_size = config->max_packet_size & ~(size_t) 7;
    if (w->packet_size < SEND_MIN_PACKET_SIZE)
        w->packet_size = SEND_MIN_PACKET_SIZE;
    if (w->packet_size > UDP_PACKET_LIMIT)
        w->packet_size = UDP_PACKET_LIMIT;
    w->use_gso = 1;
    w->arena_size = UDP_ARENA_SIZE + w->packet_size;
    w->arena = malloc(w->arena_size);
    send_stream *s = NULL;
    if (w->arena && w->addrs && w->dest)
        s = send_stream_new(&udp_ops, w, tp, config, n_addrs);
    if (!s) {
        udp_destroy(&(send_stream){.writer = w});
        return NULL;
    }
    return s;
}

int send_make_sockaddr(int family, const char *host, int port, unsigned int flowinfo,
                       unsigned int scope_id, struct sockaddr_storage *out, socklen_t *len)
{
    memset(out, 0, sizeof(*out));
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *) out;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t) port);
        if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
            return -1;
        *len = sizeof(*sin);
        return 0;
    } else if (family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *) out;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t) port);
        sin6->sin6_flowinfo = htonl(flowinfo);
        sin6->sin6_scope_id = scope_id;
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
            return -1;
        *len = sizeof(*sin6);
        return 0;
    }
    return -1;
}
