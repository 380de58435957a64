/* UDP reader: batched recvmmsg on a non-blocking socket watched by the
 * thread pool.
 *
 * Where the kernel offers it (Linux 5.0 and later), the socket receives with
 * UDP_GRO: the kernel may hand over several datagrams of one flow coalesced
 * into one buffer, all of one segment size (given in a control message)
 * except perhaps the last. A sender using UDP_SEGMENT on loopback then
 * costs one receive call per segment train rather than per datagram. The
 * reader splits the buffer back into datagrams. Setting SPEAD2_UDP_GRO=0 in
 * the environment turns it off.
 *
 * Payloads are received straight into heap memory where the reader can
 * predict where they go (see plan_receive); SPEAD2_UDP_DIRECT=0 turns that
 * off. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "env.h"
#include "recv_watch.h"

#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif

#define UDP_BATCH 64
#define GRO_BATCH 16
#define UDP_ROUNDS 16
#define RECEIVES_PER_BATCH 8
/* No UDP datagram (nor coalesced train) carries more than 65535 bytes, so a
 * larger max_size needs no larger receive slots (and must not size them:
 * slot * UDP_BATCH would overflow). */
#define UDP_SLOT_LIMIT 65536
#define GRO_CONTROL CMSG_SPACE(sizeof(int))

/* Receiving straight into heap memory. Packets of a heap usually arrive in
 * order, each like the one before: the same header size, the same payload
 * size, the payload continuing where the last one ended. Before each
 * receive the reader predicts where the coming datagrams' payloads belong
 * in the heap under assembly and gives the kernel a scatter list: each
 * predicted header goes to a small buffer of the reader's, each payload
 * straight to its place in the heap, and anything beyond to the slot's own
 * buffer. A datagram that turns out as predicted needs no copy at all.
 * Predictions only cover heap memory that no packet has filled yet, and are
 * made and used with the stream lock held, so nothing else touches that
 * memory meanwhile. At the first datagram that is not as predicted (and
 * before the lock is released with datagrams still pending) every pending
 * datagram is gathered back into its slot's buffer, as if it had been
 * received there; the bytes left in the heap are then overwritten when the
 * right packets arrive, or never count as received. */
#define PRED_MAX_HEADER 128          /* header bytes of a predicted packet, at most */
#define PRED_MIN_PAYLOAD 1024        /* smaller payloads are cheaper to copy */
#define PRED_PER_SLOT 16             /* predicted datagrams per coalesced slot, at most */
#define PRED_LONG_HEAP 16            /* packets in a heap worth receiving its start alone */
#define PRED_MISS_LIMIT 4            /* receives in a row whose plan failed ... */
#define PRED_BACKOFF 256             /* ... make this many receives go unplanned */

typedef struct {
    int n_pred;                  /* predicted datagrams at the start of the slot */
    size_t seg;                  /* their size */
    size_t hlen;                 /* their header size */
    int64_t cnt;                 /* their heap */
    uint64_t offset0;            /* payload offset of the first */
    uint8_t *dest0;              /* where the first's payload goes (the rest follow) */
    uint8_t *hdr;                /* their headers, one after another */
} slot_plan;

typedef struct {
    spead_watched_reader w;
    size_t max_size;
    int gro;                     /* receiving coalesced datagrams */
    int batch;                   /* receive slots in use */
    int direct;                  /* predicting (unless SPEAD2_UDP_DIRECT=0) */
    size_t slot;                 /* bytes of each slot's own buffer */
    int iov_per_slot;
    uint8_t *buffers;
    uint8_t *control;            /* GRO: one control message per slot */
    uint8_t *headers;            /* predicted headers: PRED_PER_SLOT * PRED_MAX_HEADER per slot */
    struct mmsghdr msgs[UDP_BATCH];
    struct iovec *iov;           /* iov_per_slot per slot */
    slot_plan plans[UDP_BATCH];
    int planned;                 /* some pending slot may still have a plan */
    int n_pending, next_pending; /* slots received but not yet assembled */
    size_t seg_offset;           /* GRO: where the next datagram starts in the current slot */
    int vlen;                    /* slots offered to the next receive */
    int may_receive;             /* receives next() may still make in this batch */
    int drained;                 /* the last receive left slots unfilled */
    /* the heap and shape of the latest continuation packet: the prediction */
    int have_shape;
    int64_t shape_cnt;
    size_t shape_hlen, shape_plen;
    uint64_t shape_heap_packets;  /* how many such packets make a heap */
    int miss_streak;             /* receives in a row with a datagram not as planned */
    int backoff;                 /* receives left to make without a plan */
} udp_reader;

/* The segment size the kernel reports for a coalesced slot, or 0. */
static size_t gro_segment_size(struct mmsghdr *m)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m->msg_hdr); c; c = CMSG_NXTHDR(&m->msg_hdr, c)) {
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
            int size;
            memcpy(&size, CMSG_DATA(c), sizeof(size));
            return size > 0 ? (size_t) size : 0;
        }
    }
    return 0;
}

static uint8_t *slot_buffer(udp_reader *r, int i)
{
    return r->buffers + (size_t) i * r->slot;
}

/* Bytes the kernel wrote for slot ``i`` (at most what its buffer holds). */
static size_t slot_length(udp_reader *r, int i)
{
    size_t n = r->msgs[i].msg_len;
    return n < r->slot ? n : r->slot;
}

/* Stream lock held: gather slot ``i``'s datagrams from byte ``from`` on
 * (those before it have been assembled) back into its own buffer, in the
 * order they arrived, and forget its plan. What has been assembled is not
 * read again: it was all as planned, so ``from`` starts a planned datagram,
 * and its heap may have been handed on (and freed) since. */
static void unplan_slot(udp_reader *r, int i, size_t from)
{
    slot_plan *pl = &r->plans[i];
    if (pl->n_pred == 0)
        return;
    uint8_t *b = slot_buffer(r, i);
    size_t n = slot_length(r, i);
    size_t planned = (size_t) pl->n_pred * pl->seg;
    size_t plen = pl->seg - pl->hlen;
    if (n > planned)
        memmove(b + planned, b, n - planned);
    for (int k = 0; k < pl->n_pred; k++) {
        size_t at = (size_t) k * pl->seg;
        if (at >= n)
            break;
        if (at + pl->seg <= from)
            continue;
        size_t h = n - at < pl->hlen ? n - at : pl->hlen;
        memcpy(b + at, pl->hdr + (size_t) k * pl->hlen, h);
        if (at + pl->hlen < n) {
            size_t rest = n - at - pl->hlen;
            memcpy(b + at + pl->hlen, pl->dest0 + (size_t) k * plen, rest < plen ? rest : plen);
        }
    }
    pl->n_pred = 0;
}

/* Every pending slot from byte ``from`` of slot ``i`` on loses its plan. */
static void unplan_from(udp_reader *r, int i, size_t from)
{
    if (!r->planned)
        return;
    for (int j = i; j < r->n_pending; j++)
        unplan_slot(r, j, j == i ? from : 0);
    r->planned = 0;
}

/* Stream lock held: lay out each slot's scatter list, predicting where the
 * datagrams about to be received belong. */
static void plan_receive(udp_reader *r, recv_stream *s)
{
    uint8_t *base = NULL;
    uint64_t end = 0, length = 0;
    size_t hlen = r->shape_hlen, plen = r->shape_plen, seg = hlen + plen;
    /* a chunk stream's heaps have no memory of their own to plan into; a
     * stream whose packets keep arriving unlike the plan (several senders'
     * heaps interleaved, say) is left unplanned for a while */
    int plannable = r->direct && r->have_shape
                    && !spead_assembler_get_config(s->assembler)->placement;
    if (plannable && r->backoff > 0) {
        r->backoff--;
        plannable = 0;
    }
    int predict = plannable
                  && spead_assembler_payload_window(s->assembler, r->shape_cnt, &base, &end,
                                                    &length);
    r->planned = 0;
    r->vlen = r->batch;
    if (plannable && !predict && r->shape_heap_packets >= PRED_LONG_HEAP) {
        /* between long heaps: take the next heap's first packets alone, so
         * that the receive after can plan the rest of it */
        r->vlen = 1;
    }
    /* (vlen may shrink as the plan goes) */
    for (int i = 0; i < r->vlen; i++) {
        slot_plan *pl = &r->plans[i];
        struct iovec *iov = r->iov + (size_t) i * r->iov_per_slot;
        int k = 0;
        if (predict) {
            int max_k = r->gro ? (int) (r->slot / seg) : 1;
            if (max_k > PRED_PER_SLOT)
                max_k = PRED_PER_SLOT;
            pl->seg = seg;
            pl->hlen = hlen;
            pl->cnt = r->shape_cnt;
            pl->offset0 = end;
            pl->dest0 = base + end;
            pl->hdr = r->headers + (size_t) i * PRED_PER_SLOT * PRED_MAX_HEADER;
            while (k < max_k && end + plen <= length) {
                iov[2 * k].iov_base = pl->hdr + (size_t) k * hlen;
                iov[2 * k].iov_len = hlen;
                iov[2 * k + 1].iov_base = base + end;
                iov[2 * k + 1].iov_len = plen;
                end += plen;
                k++;
            }
            if (k > 0)
                r->planned = 1;
            if (r->gro && k > 0) {
                /* how many datagrams a train holds is the sender's choice:
                 * receive this one train alone, and plan the next one from
                 * what it held */
                r->vlen = 1;
            } else if (end + plen > length) {
                /* the heap is planned to its end: receive one slot more (for
                 * its last, shorter packet) and leave the next heap's packets
                 * to a receive that can plan for them */
                predict = 0;
                if (i + 2 < r->vlen)
                    r->vlen = i + 2;
            }
        }
        pl->n_pred = k;
        iov[2 * k].iov_base = slot_buffer(r, i);
        iov[2 * k].iov_len = r->slot;
        r->msgs[i].msg_hdr.msg_iov = iov;
        r->msgs[i].msg_hdr.msg_iovlen = (size_t) (2 * k + 1);
    }
}

/* Stream lock held: receive a batch into ``n_pending`` slots (0 if none
 * was waiting); ``drained`` says whether it left any slot unfilled. */
static void receive(udp_reader *r, recv_stream *s)
{
    plan_receive(r, s);
    for (int i = 0; i < r->vlen; i++) {
        r->msgs[i].msg_hdr.msg_flags = 0;
        r->msgs[i].msg_len = 0;
        if (r->gro)
            r->msgs[i].msg_hdr.msg_controllen = GRO_CONTROL;
    }
    int n;
    do
        n = recvmmsg(r->w.fd, r->msgs, (unsigned) r->vlen, MSG_DONTWAIT, NULL);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            recv_stream_log(s, SPEAD_LOG_WARNING, "UDP receive failed: %s", strerror(errno));
        n = 0;
    }
    r->drained = n < r->vlen;
    r->n_pending = n;
    r->next_pending = 0;
    r->seg_offset = 0;
    if (n == 0)
        r->planned = 0;
}

/* The next datagram of the pending slots: its slot, where it starts in the
 * slot's bytes, its length, and whether the kernel cut it short. Returns 0
 * when there is none. */
static int next_datagram(udp_reader *r, int *slot, size_t *start, size_t *len, int *truncated)
{
    while (r->next_pending < r->n_pending) {
        int i = r->next_pending;
        struct mmsghdr *m = &r->msgs[i];
        size_t total = m->msg_len;
        size_t seg = r->gro ? gro_segment_size(m) : 0;
        *slot = i;
        if (seg == 0 || seg >= total) {
            /* one datagram in this slot */
            r->next_pending++;
            r->seg_offset = 0;
            *start = 0;
            *len = total;
            *truncated = (m->msg_hdr.msg_flags & MSG_TRUNC) != 0;
            return 1;
        }
        if (r->seg_offset >= total) {
            r->next_pending++;
            r->seg_offset = 0;
            continue;
        }
        *start = r->seg_offset;
        *len = total - r->seg_offset < seg ? total - r->seg_offset : seg;
        *truncated = 0;
        r->seg_offset += seg;
        if (r->seg_offset >= total) {
            r->next_pending++;
            r->seg_offset = 0;
        }
        return 1;
    }
    return 0;
}

/* A datagram that arrived as planned: decode its header from where it went
 * and point its payload at the heap memory it already fills. */
static int arrived_as_planned(udp_reader *r, recv_stream *s, int i, size_t start, size_t len,
                              spead_packet *pkt)
{
    const slot_plan *pl = &r->plans[i];
    if (start >= (size_t) pl->n_pred * pl->seg || start % pl->seg != 0 || len != pl->seg)
        return 0;
    size_t k = start / pl->seg;
    size_t plen = pl->seg - pl->hlen;
    const uint8_t *hdr = pl->hdr + k * pl->hlen;
    size_t n_items = ((size_t) hdr[6] << 8) | hdr[7];
    if (SPEAD_HEADER_SIZE + n_items * SPEAD_POINTER_SIZE != pl->hlen)
        return 0;
    /* only the header is read: it lies whole in ``hdr`` */
    if (spead_decode_packet(hdr, len, pkt) != SPEAD_PACKET_OK)
        return 0;
    uint64_t offset = pl->offset0 + k * plen;
    if (pkt->heap_cnt != pl->cnt || (uint64_t) pkt->payload_offset != offset
        || (uint64_t) pkt->payload_length != plen || pkt->is_stop)
        return 0;
    /* the heap is still the one planned for, its memory unfilled there */
    uint8_t *base;
    uint64_t end, length;
    if (!spead_assembler_payload_window(s->assembler, pl->cnt, &base, &end, &length)
        || base + offset != pl->dest0 + k * plen || end > offset)
        return 0;
    pkt->payload = pl->dest0 + k * plen;
    return 1;
}

/* Remember the shape of a decoded packet that continues a heap. */
static void learn_shape(udp_reader *r, const spead_packet *pkt, size_t len)
{
    size_t hlen = SPEAD_HEADER_SIZE + (size_t) pkt->n_items * SPEAD_POINTER_SIZE;
    if (pkt->payload_offset > 0 && hlen <= PRED_MAX_HEADER
        && (uint64_t) pkt->payload_length >= PRED_MIN_PAYLOAD
        && hlen + (size_t) pkt->payload_length == len) {
        r->have_shape = 1;
        r->shape_hlen = hlen;
        r->shape_plen = (size_t) pkt->payload_length;
        r->shape_heap_packets = pkt->heap_length > 0
                                ? (uint64_t) pkt->heap_length / (uint64_t) pkt->payload_length : 0;
    }
    r->shape_cnt = pkt->heap_cnt;
}

static int udp_next(spead_reader *base, spead_packet *pkt)
{
    udp_reader *r = (udp_reader *) base;
    recv_stream *s = base->stream;
    int i, truncated;
    size_t start, len;
    if (!next_datagram(r, &i, &start, &len, &truncated)) {
        if (r->may_receive <= 0 || r->drained)
            return RECV_READ_NONE;
        r->may_receive--;
        receive(r, s);
        if (!next_datagram(r, &i, &start, &len, &truncated))
            return RECV_READ_NONE;
    }
    if (r->plans[i].n_pred > 0) {
        if (!truncated && arrived_as_planned(r, s, i, start, len, pkt)) {
            recv_stream_count_locked(s, SPEAD_STAT_DIRECT_PACKETS);
            r->miss_streak = 0;
            learn_shape(r, pkt, len);
            return RECV_READ_PACKET;
        }
        /* (a datagram after the planned ones, such as a heap's last and
         * shorter packet, is no failure of the plan) */
        if (start < (size_t) r->plans[i].n_pred * r->plans[i].seg
            && ++r->miss_streak >= PRED_MISS_LIMIT) {
            r->miss_streak = 0;
            r->backoff = PRED_BACKOFF;
        }
    }
    /* from here on nothing pending is where it was planned to go */
    unplan_from(r, i, start);
    if (truncated || len > r->max_size) {
        recv_stream_count_locked(s, SPEAD_STAT_TOO_LARGE_PACKETS);
        recv_stream_log(s, SPEAD_LOG_INFO, "packet rejected: larger than max_size (%zu bytes)",
                        r->max_size);
        return RECV_READ_SKIP;
    }
    int st = spead_decode_packet(slot_buffer(r, i) + start, len, pkt);
    if (st != SPEAD_PACKET_OK) {
        recv_stream_count_locked(s, SPEAD_STAT_BAD_PACKETS);
        recv_stream_log(s, SPEAD_LOG_INFO, "packet rejected: %s", spead_packet_status_string(st));
        return RECV_READ_SKIP;
    }
    learn_shape(r, pkt, len);
    return RECV_READ_PACKET;
}

/* Stream lock held, about to be released: pending datagrams go back to
 * their slots' buffers, since the heaps they were planned into may change. */
static void udp_batch_end(spead_reader *base)
{
    udp_reader *r = (udp_reader *) base;
    unplan_from(r, r->next_pending, r->seg_offset);
}

/* Receive and assemble until the socket is drained (or enough rounds have
 * passed for others to get a turn). Returns 1 when the socket watch should
 * be re-armed. */
static int udp_process(spead_watched_reader *w)
{
    udp_reader *r = (udp_reader *) w;
    recv_stream *s = w->base.stream;
    if (!watched_reader_enter(w))
        return 0;

    int rearm = 1;
    for (int round = 0; round < UDP_ROUNDS; round++) {
        /* a few receives per batch, made with the stream lock held (see above) */
        r->may_receive = RECEIVES_PER_BATCH;
        r->drained = 0;
        /* everything received goes into assembly unless the ring fills, so
         * nothing is left behind for an epoll wake-up that may never come */
        int res = recv_stream_run_batch(s, &w->base, SIZE_MAX);
        if (res == RECV_BATCH_DONE || res == RECV_BATCH_PAUSED) {
            /* finished, or resumed later by a task */
            rearm = 0;
            break;
        }
        if (r->drained)
            break; /* the socket is probably drained: wait for readiness */
    }
    watched_reader_leave(w);
    return rearm;
}

static void udp_destroy(spead_reader *base)
{
    udp_reader *r = (udp_reader *) base;
    if (r->w.fd >= 0)
        close(r->w.fd);
    free(r->buffers);
    free(r->control);
    free(r->headers);
    free(r->iov);
    free(r);
}

static const spead_reader_ops udp_ops = {
    .next = udp_next,
    .batch_end = udp_batch_end,
    .start = watched_reader_start,
    .resume = watched_reader_resume,
    .close = watched_reader_close,
    .destroy = udp_destroy,
    .lossy = 1,
};

int recv_add_udp_reader(recv_stream *s, int fd, size_t max_size)
{
    udp_reader *r = calloc(1, sizeof(*r));
    if (!r) {
        close(fd);
        return -ENOMEM;
    }
    watched_reader_init(&r->w, &udp_ops, fd, udp_process, "UDP socket");
    r->max_size = max_size;
    int one = 1;
    r->gro = spead_env_allows("SPEAD2_UDP_GRO")
             && setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof(one)) == 0;
    r->direct = spead_env_allows("SPEAD2_UDP_DIRECT");
    r->batch = r->gro ? GRO_BATCH : UDP_BATCH;
    /* one extra byte per slot detects datagrams larger than max_size; a
     * coalesced train may fill a whole slot */
    r->slot = r->gro ? UDP_SLOT_LIMIT
                     : (max_size < UDP_SLOT_LIMIT ? max_size : UDP_SLOT_LIMIT) + 1;
    r->iov_per_slot = 2 * (r->gro ? PRED_PER_SLOT : 1) + 1;
    r->buffers = malloc(r->slot * r->batch);
    r->control = r->gro ? calloc(r->batch, GRO_CONTROL) : NULL;
    r->headers = malloc((size_t) r->batch * PRED_PER_SLOT * PRED_MAX_HEADER);
    r->iov = calloc((size_t) r->batch * r->iov_per_slot, sizeof(struct iovec));
    if (!r->buffers || (r->gro && !r->control) || !r->headers || !r->iov) {
        close(fd);
        free(r->buffers);
        free(r->control);
        free(r->headers);
        free(r->iov);
        free(r);
        return -ENOMEM;
    }
    /* each receive lays out its slots' scatter lists (plan_receive) */
    for (int i = 0; i < r->batch; i++) {
        memset(&r->msgs[i], 0, sizeof(r->msgs[i]));
        if (r->gro) {
            r->msgs[i].msg_hdr.msg_control = r->control + i * GRO_CONTROL;
            r->msgs[i].msg_hdr.msg_controllen = GRO_CONTROL;
        }
    }
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    recv_stream_log(s, SPEAD_LOG_DEBUG, "UDP reader: %s%s",
                    r->gro ? "coalesced datagrams (GRO)" : "one datagram per slot",
                    r->direct ? ", straight into heap memory where predictable" : "");
    if (recv_stream_add_reader(s, &r->w.base) != 0)
        return -ESHUTDOWN;
    return 0;
}
