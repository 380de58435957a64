/* Packetisation of an outgoing heap (sans-IO).
 *
 * A heap is an ordered list of items, each either an immediate (value in the
 * pointer's address field) or addressed (bytes in the heap payload, laid out
 * back to back in item order).  The packetiser splits it into packets of at
 * most max_packet_size bytes:
 *
 *   - max_packet_size is rounded down to a multiple of 8;
 *   - every packet carries HEAP_CNT, HEAP_LENGTH, PAYLOAD_OFFSET and
 *     PAYLOAD_LENGTH immediates first;
 *   - the heap's item pointers follow, as many per packet as leave room for 8
 *     bytes of payload, in the first packet(s);
 *   - payload fills the rest of each packet.
 *
 * When the payload is too short to give every pointer-carrying packet some
 * payload (in particular when it is empty) a NULL_ID pointer is appended,
 * addressed at the end of the real payload, and zero padding makes the heap
 * long enough: at least 8 bytes per pointer-carrying packet but the last, and
 * 1 byte for the last.
 *
 * With repeat_pointers, every packet carries all the item pointers (and the
 * NULL pointer, if any) and the payload is split across the packets; the
 * pointers must then fit in one packet.
 *
 * A group of heaps is sent by interleaving their packets (send_group_iter):
 * round robin (the next packet of each unfinished heap in turn, in list
 * order) or serially (each heap in full, in list order).
 */
#ifndef SPEAD2_SEND_PACKET_H
#define SPEAD2_SEND_PACKET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Header plus the four per-packet immediates. */
#define SEND_PACKET_PREFIX 40
/* Smallest usable max_packet_size: prefix, one item pointer, 8 payload bytes. */
#define SEND_MIN_PACKET_SIZE 56
/* Item-pointer count is a 16-bit field. */
#define SEND_MAX_POINTERS_PER_PACKET 65535

typedef struct {
    uint64_t id;
    int immediate;
    uint64_t value;        /* immediates: the address-field value */
    const uint8_t *data;   /* addressed items: the bytes */
    uint64_t length;       /* addressed items: number of bytes */
} send_item;

enum send_layout_status {
    SEND_LAYOUT_OK = 0,
    SEND_LAYOUT_PACKET_TOO_SMALL,
    SEND_LAYOUT_HEAP_TOO_LARGE,
    SEND_LAYOUT_BAD_ID,
    SEND_LAYOUT_BAD_CNT,
    SEND_LAYOUT_REPEAT_TOO_SMALL,
};

typedef struct {
    int heap_address_bits;
    int repeat_pointers;       /* every packet carries every pointer */
    size_t packet_size;        /* max_packet_size rounded down to a multiple of 8 */
    size_t pointers_per_packet;
    size_t n_items;
    size_t n_pointers;         /* n_items, plus one when padding is added */
    uint64_t payload_size;     /* bytes of real item data */
    uint64_t heap_length;      /* payload_size plus padding */
    uint64_t n_packets;
    uint64_t total_bytes;      /* sum of the sizes of all packets */
} send_layout;

/* Compute how a heap splits into packets; validates ids and sizes against the
 * flavour.  Returns a send_layout_status. */
int send_layout_compute(send_layout *layout, const send_item *items, size_t n_items,
                        int heap_address_bits, size_t max_packet_size, int repeat_pointers);

const char *send_layout_status_string(int status);

typedef struct {
    const send_item *items;
    send_layout layout;
    uint64_t cnt;
    size_t next_pointer;       /* index into items (n_items = the NULL pointer) */
    uint64_t next_offset;      /* payload offset of the next packet */
    uint64_t next_address;     /* address of the next addressed item pointer */
    /* payload cursor: position of the next payload byte to hand out */
    size_t cur_item;
    uint64_t cur_item_offset;
    uint64_t cur_offset;
} send_packetizer;

/* ``items`` must outlive the packetiser.  Returns a send_layout_status. */
int send_packetizer_init(send_packetizer *pz, const send_item *items, size_t n_items,
                         int heap_address_bits, uint64_t cnt, size_t max_packet_size,
                         int repeat_pointers);

/* As send_packetizer_init, with a layout already computed (and checked) by
 * send_layout_compute for these items. */
void send_packetizer_start(send_packetizer *pz, const send_item *items,
                           const send_layout *layout, uint64_t cnt);

/* Writes the next packet's header and item pointers to ``hdr`` (room for
 * layout.packet_size bytes suffices) and returns its length; the packet's
 * payload length goes to *payload_length.  Returns 0 when the heap is done.
 * The payload must then be fetched (before the next call) with
 * send_packetizer_copy or send_packetizer_segments. */
size_t send_packetizer_next(send_packetizer *pz, uint8_t *hdr, size_t *payload_length);

/* Copy the next ``len`` payload bytes to ``out``. */
void send_packetizer_copy(send_packetizer *pz, uint8_t *out, size_t len);

/* Describe the next ``len`` payload bytes as at most ``max_segs`` pieces of
 * memory.  Returns the number used, or -1 (and consumes nothing) if more
 * would be needed. */
int send_packetizer_segments(send_packetizer *pz, size_t len, struct iovec *segs, int max_segs);

enum send_group_mode {
    SEND_GROUP_ROUND_ROBIN = 0,
    SEND_GROUP_SERIAL = 1,
};

/* The order in which the packets of a group of heaps go out. */
typedef struct {
    send_packetizer *pz;       /* one per heap, started */
    size_t *active;            /* round robin: unfinished heaps, in list order */
    size_t n_active;
    size_t pos;                /* round robin: index into active of the next heap */
    size_t n_heaps;
    size_t cur;                /* serial: the heap being sent */
    int mode;
} send_group_iter;

/* ``active`` has room for n_heaps entries (unused in serial mode). */
void send_group_init(send_group_iter *g, send_packetizer *pz, size_t *active, size_t n_heaps,
                     int mode);

/* Writes the header of the group's next packet to ``hdr`` (as
 * send_packetizer_next) and returns the index of its heap, whose
 * packetiser then gives the payload; *hdr_len and *payload_length receive
 * the lengths.  Returns SIZE_MAX when every heap is done. */
size_t send_group_next(send_group_iter *g, uint8_t *hdr, size_t *hdr_len,
                       size_t *payload_length);

#endif
