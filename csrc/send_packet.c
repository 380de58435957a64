#include "send_packet.h"

#include <string.h>

#include "wire.h"

/* Source of padding bytes for scatter-gather output. */
static const uint8_t zeros[65536];

static const char *const layout_strings[] = {
    "ok",
    /* the reference's words, which programs may match */
    "packet size is too small",
    "heap is too large for the flavour's heap address bits",
    "item ID is too large for the flavour's item pointer bits",
    "heap counter is too large for the flavour's heap address bits",
    "packet size is too small to repeat item pointers",
};

const char *send_layout_status_string(int status)
{
    if (status < 0 || status > SEND_LAYOUT_REPEAT_TOO_SMALL)
        return "unknown heap layout error";
    return layout_strings[status];
}

/* Payload bytes needed so that each of the packets carrying n pointers (ppp
 * per packet) has some payload: 8 bytes for all but the last, 1 for that. */
static uint64_t payload_needed(size_t n, size_t ppp)
{
    if (n == 0)
        return 0;
    uint64_t packets = (n + ppp - 1) / ppp;
    return (packets - 1) * 8 + 1;
}

int send_layout_compute(send_layout *layout, const send_item *items, size_t n_items,
                        int heap_address_bits, size_t max_packet_size, int repeat_pointers)
{
    size_t packet_size = max_packet_size & ~(size_t) 7;
    if (packet_size < SEND_MIN_PACKET_SIZE)
        return SEND_LAYOUT_PACKET_TOO_SMALL;
    size_t ppp = (packet_size - SEND_PACKET_PREFIX) / 8 - 1;
    if (ppp > SEND_MAX_POINTERS_PER_PACKET - 4)
        ppp = SEND_MAX_POINTERS_PER_PACKET - 4;
    const uint64_t id_limit = UINT64_C(1) << (63 - heap_address_bits);
    const uint64_t addr_mask = (UINT64_C(1) << heap_address_bits) - 1;

    uint64_t payload = 0;
    for (size_t i = 0; i < n_items; i++) {
        if (items[i].id >= id_limit)
            return SEND_LAYOUT_BAD_ID;
        if (items[i].immediate) {
            if (items[i].value > addr_mask)
                return SEND_LAYOUT_HEAP_TOO_LARGE;
        } else {
            if (items[i].length > addr_mask || payload + items[i].length > addr_mask)
                return SEND_LAYOUT_HEAP_TOO_LARGE;
            payload += items[i].length;
        }
    }
    /* As the reference does, the pointers must fit in one packet with room
     * for a NULL pointer, whether or not one is needed. */
    if (repeat_pointers && n_items >= ppp)
        return SEND_LAYOUT_REPEAT_TOO_SMALL;
    size_t n_pointers = n_items;
    uint64_t heap_length = payload;
    /* As the reference does, decide on padding as if the NULL pointer were
     * already there.  With repeated pointers every packet has them all, so
     * one byte of payload is enough. */
    uint64_t needed = repeat_pointers ? 1 : payload_needed(n_items + 1, ppp);
    if (payload < needed) {
        n_pointers = n_items + 1;
        heap_length = repeat_pointers ? 1 : payload_needed(n_pointers, ppp);
    }
    if (heap_length > addr_mask)
        return SEND_LAYOUT_HEAP_TOO_LARGE;

    uint64_t packets = 0;
    uint64_t pointer_bytes;
    if (repeat_pointers) {
        uint64_t room = packet_size - SEND_PACKET_PREFIX - 8 * (uint64_t) n_pointers;
        packets = (heap_length + room - 1) / room;
        pointer_bytes = 8 * (uint64_t) n_pointers * packets;
    } else {
        /* Count packets: the pointer-carrying ones first, then payload-only. */
        uint64_t remaining = heap_length;
        for (size_t done = 0; done < n_pointers; packets++) {
            size_t np = n_pointers - done < ppp ? n_pointers - done : ppp;
            uint64_t room = packet_size - SEND_PACKET_PREFIX - 8 * np;
            remaining -= remaining < room ? remaining : room;
            done += np;
        }
        uint64_t room = packet_size - SEND_PACKET_PREFIX;
        packets += (remaining + room - 1) / room;
        pointer_bytes = 8 * (uint64_t) n_pointers;
    }

    layout->heap_address_bits = heap_address_bits;
    layout->repeat_pointers = repeat_pointers != 0;
    layout->packet_size = packet_size;
    layout->pointers_per_packet = repeat_pointers ? n_pointers : ppp;
    layout->n_items = n_items;
    layout->n_pointers = n_pointers;
    layout->payload_size = payload;
    layout->heap_length = heap_length;
    layout->n_packets = packets;
    layout->total_bytes = heap_length + SEND_PACKET_PREFIX * packets + pointer_bytes;
    return SEND_LAYOUT_OK;
}

void send_packetizer_start(send_packetizer *pz, const send_item *items,
                           const send_layout *layout, uint64_t cnt)
{
    pz->items = items;
    pz->layout = *layout;
    pz->cnt = cnt;
    pz->next_pointer = 0;
    pz->next_offset = 0;
    pz->next_address = 0;
    pz->cur_item = 0;
    pz->cur_item_offset = 0;
    pz->cur_offset = 0;
}

int send_packetizer_init(send_packetizer *pz, const send_item *items, size_t n_items,
                         int heap_address_bits, uint64_t cnt, size_t max_packet_size,
                         int repeat_pointers)
{
    send_layout layout;
    int status = send_layout_compute(&layout, items, n_items, heap_address_bits,
                                     max_packet_size, repeat_pointers);
    if (status != SEND_LAYOUT_OK)
        return status;
    if (cnt > (UINT64_C(1) << heap_address_bits) - 1)
        return SEND_LAYOUT_BAD_CNT;
    send_packetizer_start(pz, items, &layout, cnt);
    return SEND_LAYOUT_OK;
}

size_t send_packetizer_next(send_packetizer *pz, uint8_t *hdr, size_t *payload_length)
{
    const send_layout *L = &pz->layout;
    if (pz->next_pointer == L->n_pointers && pz->next_offset == L->heap_length)
        return 0;
    const int hab = L->heap_address_bits;
    if (L->repeat_pointers) {
        /* every packet lists the pointers from the first, at the same addresses */
        pz->next_pointer = 0;
        pz->next_address = 0;
    }
    size_t np = L->n_pointers - pz->next_pointer;
    if (np > L->pointers_per_packet)
        np = L->pointers_per_packet;
    uint64_t room = L->packet_size - SEND_PACKET_PREFIX - 8 * np;
    uint64_t left = L->heap_length - pz->next_offset;
    uint64_t pl = left < room ? left : room;

    spead_write_header(hdr, hab, (int) (4 + np));
    uint8_t *p = hdr + SPEAD_HEADER_SIZE;
    spead_store_be64(p, spead_make_pointer(1, SPEAD_HEAP_CNT_ID, pz->cnt, hab));
    spead_store_be64(p + 8, spead_make_pointer(1, SPEAD_HEAP_LENGTH_ID, L->heap_length, hab));
    spead_store_be64(p + 16, spead_make_pointer(1, SPEAD_PAYLOAD_OFFSET_ID, pz->next_offset, hab));
    spead_store_be64(p + 24, spead_make_pointer(1, SPEAD_PAYLOAD_LENGTH_ID, pl, hab));
    p += 32;
    for (size_t k = 0; k < np; k++, p += 8) {
        size_t i = pz->next_pointer + k;
        uint64_t ptr;
        if (i == L->n_items) {
            ptr = spead_make_pointer(0, SPEAD_NULL_ID, L->payload_size, hab);
        } else if (pz->items[i].immediate) {
            ptr = spead_make_pointer(1, pz->items[i].id, pz->items[i].value, hab);
        } else {
            ptr = spead_make_pointer(0, pz->items[i].id, pz->next_address, hab);
            pz->next_address += pz->items[i].length;
        }
        spead_store_be64(p, ptr);
    }
    pz->next_pointer += np;
    pz->next_offset += pl;
    *payload_length = (size_t) pl;
    return (size_t) (p - hdr);
}

/* Advance the cursor to the next addressed item that still has bytes. */
static inline void skip_exhausted(send_packetizer *pz)
{
    while (pz->cur_item < pz->layout.n_items
           && (pz->items[pz->cur_item].immediate
               || pz->cur_item_offset >= pz->items[pz->cur_item].length)) {
        pz->cur_item++;
        pz->cur_item_offset = 0;
    }
}

/* Take the next contiguous piece of payload, at most ``len`` bytes (and at
 * most ``max_pad`` of padding past the items' data), and advance past it.
 * ``*data`` points into an item, or is NULL for padding (zero bytes). */
static size_t next_piece(send_packetizer *pz, size_t len, size_t max_pad, const uint8_t **data)
{
    if (pz->cur_offset >= pz->layout.payload_size) {
        *data = NULL;
        if (len > max_pad)
            len = max_pad;
    } else {
        skip_exhausted(pz);
        const send_item *it = &pz->items[pz->cur_item];
        uint64_t avail = it->length - pz->cur_item_offset;
        if (avail < len)
            len = (size_t) avail;
        *data = it->data + pz->cur_item_offset;
        pz->cur_item_offset += len;
    }
    pz->cur_offset += len;
    return len;
}

void send_packetizer_copy(send_packetizer *pz, uint8_t *out, size_t len)
{
    while (len > 0) {
        const uint8_t *data;
        size_t n = next_piece(pz, len, len, &data);
        if (data)
            memcpy(out, data, n);
        else
            memset(out, 0, n);
        out += n;
        len -= n;
    }
}

int send_packetizer_segments(send_packetizer *pz, size_t len, struct iovec *segs, int max_segs)
{
    size_t save_item = pz->cur_item;
    uint64_t save_item_offset = pz->cur_item_offset, save_offset = pz->cur_offset;
    int n_segs = 0;
    while (len > 0) {
        if (n_segs == max_segs) {
            pz->cur_item = save_item;
            pz->cur_item_offset = save_item_offset;
            pz->cur_offset = save_offset;
            return -1;
        }
        const uint8_t *data;
        size_t n = next_piece(pz, len, sizeof(zeros), &data);
        segs[n_segs].iov_base = (void *) (data ? data : zeros);
        segs[n_segs].iov_len = n;
        n_segs++;
        len -= n;
    }
    return n_segs;
}

void send_group_init(send_group_iter *g, send_packetizer *pz, size_t *active, size_t n_heaps,
                     int mode)
{
    g->pz = pz;
    g->active = active;
    g->n_heaps = n_heaps;
    g->mode = mode;
    g->cur = 0;
    g->pos = 0;
    g->n_active = 0;
    if (mode == SEND_GROUP_ROUND_ROBIN) {
        for (size_t i = 0; i < n_heaps; i++)
            active[i] = i;
        g->n_active = n_heaps;
    }
}

size_t send_group_next(send_group_iter *g, uint8_t *hdr, size_t *hdr_len,
                       size_t *payload_length)
{
    if (g->mode == SEND_GROUP_SERIAL) {
        for (; g->cur < g->n_heaps; g->cur++) {
            size_t h = send_packetizer_next(&g->pz[g->cur], hdr, payload_length);
            if (h) {
                *hdr_len = h;
                return g->cur;
            }
        }
        return SIZE_MAX;
    }
    /* A heap is found to be finished when it is next in turn and has no
     * packet left: it leaves the cycle and the following heap takes its
     * turn, so no slot of the cycle is wasted. */
    while (g->n_active > 0) {
        size_t i = g->active[g->pos];
        size_t h = send_packetizer_next(&g->pz[i], hdr, payload_length);
        if (h) {
            g->pos = g->pos + 1 == g->n_active ? 0 : g->pos + 1;
            *hdr_len = h;
            return i;
        }
        g->n_active--;
        memmove(&g->active[g->pos], &g->active[g->pos + 1],
                (g->n_active - g->pos) * sizeof(size_t));
        if (g->pos == g->n_active)
            g->pos = 0;
    }
    return SIZE_MAX;
}
