/* SPEAD wire format: packet header and item pointer decode/encode.
 * Pure functions over bytes (sans-IO). */
#ifndef SPEAD2_WIRE_H
#define SPEAD2_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define SPEAD_MAGIC 0x53
#define SPEAD_VERSION 4
#define SPEAD_HEADER_SIZE 8
#define SPEAD_POINTER_SIZE 8

#define SPEAD_NULL_ID 0x00
#define SPEAD_HEAP_CNT_ID 0x01
#define SPEAD_HEAP_LENGTH_ID 0x02
#define SPEAD_PAYLOAD_OFFSET_ID 0x03
#define SPEAD_PAYLOAD_LENGTH_ID 0x04
#define SPEAD_DESCRIPTOR_ID 0x05
#define SPEAD_STREAM_CTRL_ID 0x06
#define SPEAD_CTRL_STREAM_START 0
#define SPEAD_CTRL_DESCRIPTOR_REISSUE 1
#define SPEAD_CTRL_STREAM_STOP 2
#define SPEAD_CTRL_DESCRIPTOR_UPDATE 3

/* Items of a descriptor heap */
#define SPEAD_DESCRIPTOR_NAME_ID 0x10
#define SPEAD_DESCRIPTOR_DESCRIPTION_ID 0x11
#define SPEAD_DESCRIPTOR_SHAPE_ID 0x12
#define SPEAD_DESCRIPTOR_FORMAT_ID 0x13
#define SPEAD_DESCRIPTOR_ID_ID 0x14
#define SPEAD_DESCRIPTOR_DTYPE_ID 0x15

/* PySPEAD 0.5.2 wire bugs that a flavour may reproduce */
#define SPEAD_BUG_COMPAT_DESCRIPTOR_WIDTHS 1
#define SPEAD_BUG_COMPAT_SHAPE_BIT_1 2
#define SPEAD_BUG_COMPAT_SWAP_ENDIAN 4
#define SPEAD_BUG_COMPAT_PYSPEAD_0_5_2 7

/* Copy from a packet into heap memory */
#define SPEAD_MEMCPY_STD 0
#define SPEAD_MEMCPY_NONTEMPORAL 1

enum spead_packet_status {
    SPEAD_PACKET_OK = 0,
    SPEAD_PACKET_TOO_SHORT,
    SPEAD_PACKET_BAD_MAGIC,
    SPEAD_PACKET_BAD_VERSION,
    SPEAD_PACKET_BAD_WIDTHS,
    SPEAD_PACKET_POINTERS_TRUNCATED,
    SPEAD_PACKET_NO_HEAP_CNT,
    SPEAD_PACKET_NO_PAYLOAD_OFFSET,
    SPEAD_PACKET_NO_PAYLOAD_LENGTH,
    SPEAD_PACKET_PAYLOAD_TRUNCATED,
    SPEAD_PACKET_PAYLOAD_BEYOND_HEAP,
    SPEAD_PACKET_STATUS_COUNT
};

typedef struct {
    int heap_address_bits;
    int64_t heap_cnt;
    int64_t heap_length;      /* -1 when the packet does not say */
    int64_t payload_offset;
    int64_t payload_length;
    int n_items;
    int is_stop;              /* carries STREAM_CTRL = CTRL_STREAM_STOP */
    const uint8_t *pointers;  /* n_items big-endian 64-bit words */
    const uint8_t *payload;
    size_t size;              /* bytes the packet occupies */
} spead_packet;

static inline uint64_t spead_load_be64(const uint8_t *p)
{
    uint64_t v;
    __builtin_memcpy(&v, p, 8);
    return __builtin_bswap64(v);
}

static inline void spead_store_be64(uint8_t *p, uint64_t v)
{
    v = __builtin_bswap64(v);
    __builtin_memcpy(p, &v, 8);
}

static inline int spead_pointer_immediate(uint64_t ptr)
{
    return (int) (ptr >> 63);
}

static inline uint64_t spead_pointer_id(uint64_t ptr, int heap_address_bits)
{
    return (ptr >> heap_address_bits) & ((UINT64_C(1) << (63 - heap_address_bits)) - 1);
}

static inline uint64_t spead_pointer_address(uint64_t ptr, int heap_address_bits)
{
    return ptr & ((UINT64_C(1) << heap_address_bits) - 1);
}

static inline uint64_t spead_make_pointer(int immediate, uint64_t id, uint64_t address,
                                          int heap_address_bits)
{
    return ((uint64_t) (immediate != 0) << 63) | (id << heap_address_bits)
           | (address & ((UINT64_C(1) << heap_address_bits) - 1));
}

/* Writes the 8-byte header. */
void spead_write_header(uint8_t *out, int heap_address_bits, int n_items);

/* Decode one packet at the start of ``data``. On success fills ``out``
 * (including ``out->size``) and returns SPEAD_PACKET_OK. On failure returns
 * the reason; ``out->size`` is then the packet's extent if the header,
 * pointers and payload length could be read (so a byte stream can skip it),
 * else 0. */
int spead_decode_packet(const uint8_t *data, size_t len, spead_packet *out);

const char *spead_packet_status_string(int status);

/* One item of an assembled heap, as the item pointers describe it. */
typedef struct {
    uint64_t id;
    int immediate;
    uint64_t value;     /* immediate: the address field; addressed: payload offset */
    uint64_t length;    /* addressed: bytes of payload; immediate: 0 */
} spead_item_extent;

/* The items of a heap whose item pointers (host order) are ``pointers`` and
 * whose payload is ``payload_size`` bytes. An addressed item runs to the
 * address of the next addressed pointer in address order (pointers at the
 * same address keep their order, so all but the last of them are empty), or
 * to the end of the payload. NULL_ID pointers only mark where the previous
 * item ends; they and empty addressed items are left out. Items come out in
 * pointer order. ``out`` needs room for ``n`` entries. Returns the number of
 * items, or -1 when an address lies beyond the payload, -2 when out of
 * memory. */
long spead_item_extents(const uint64_t *pointers, size_t n, int heap_address_bits,
                        uint64_t payload_size, spead_item_extent *out);

#endif
