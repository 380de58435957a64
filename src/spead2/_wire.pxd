# Typed interface to csrc/wire.h: SPEAD constants, packet decoding and item
# pointers. The constants are defined there and nowhere else.
from libc.stdint cimport int64_t, uint8_t, uint64_t

cdef extern from "wire.h" nogil:
    enum:
        SPEAD_MAGIC
        SPEAD_VERSION
        SPEAD_HEADER_SIZE
        SPEAD_POINTER_SIZE
        SPEAD_NULL_ID
        SPEAD_HEAP_CNT_ID
        SPEAD_HEAP_LENGTH_ID
        SPEAD_PAYLOAD_OFFSET_ID
        SPEAD_PAYLOAD_LENGTH_ID
        SPEAD_DESCRIPTOR_ID
        SPEAD_STREAM_CTRL_ID
        SPEAD_CTRL_STREAM_START
        SPEAD_CTRL_DESCRIPTOR_REISSUE
        SPEAD_CTRL_STREAM_STOP
        SPEAD_CTRL_DESCRIPTOR_UPDATE
        SPEAD_DESCRIPTOR_NAME_ID
        SPEAD_DESCRIPTOR_DESCRIPTION_ID
        SPEAD_DESCRIPTOR_SHAPE_ID
        SPEAD_DESCRIPTOR_FORMAT_ID
        SPEAD_DESCRIPTOR_ID_ID
        SPEAD_DESCRIPTOR_DTYPE_ID
        SPEAD_BUG_COMPAT_DESCRIPTOR_WIDTHS
        SPEAD_BUG_COMPAT_SHAPE_BIT_1
        SPEAD_BUG_COMPAT_SWAP_ENDIAN
        SPEAD_BUG_COMPAT_PYSPEAD_0_5_2
        SPEAD_MEMCPY_STD
        SPEAD_MEMCPY_NONTEMPORAL

    enum:
        SPEAD_PACKET_OK

    ctypedef struct spead_packet:
        int heap_address_bits
        int64_t heap_cnt
        int64_t heap_length
        int64_t payload_offset
        int64_t payload_length
        int n_items
        int is_stop
        const uint8_t *pointers
        const uint8_t *payload
        size_t size

    uint64_t spead_load_be64(const uint8_t *p)
    void spead_store_be64(uint8_t *p, uint64_t v)
    int spead_pointer_immediate(uint64_t ptr)
    uint64_t spead_pointer_id(uint64_t ptr, int heap_address_bits)
    uint64_t spead_pointer_address(uint64_t ptr, int heap_address_bits)
    uint64_t spead_make_pointer(int immediate, uint64_t id, uint64_t address, int heap_address_bits)
    void spead_write_header(uint8_t *out, int heap_address_bits, int n_items)
    int spead_decode_packet(const uint8_t *data, size_t len, spead_packet *out)
    const char *spead_packet_status_string(int status)

    ctypedef struct spead_item_extent:
        uint64_t id
        int immediate
        uint64_t value
        uint64_t length

    long spead_item_extents(const uint64_t *pointers, size_t n, int heap_address_bits,
                            uint64_t payload_size, spead_item_extent *out)
