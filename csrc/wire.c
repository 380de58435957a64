#include "wire.h"

#include <stdlib.h>

static const char *const status_strings[SPEAD_PACKET_STATUS_COUNT] = {
    "ok",
    "packet is shorter than a SPEAD header",
    "bad magic number (not a SPEAD packet)",
    "unsupported SPEAD version",
    "unsupported item pointer / heap address widths",
    "item pointers extend past the end of the packet",
    "packet has no HEAP_CNT item",
    "packet has no PAYLOAD_OFFSET item",
    "packet has no PAYLOAD_LENGTH item",
    "payload extends past the end of the packet",
    "payload extends past the heap length",
};

const char *spead_packet_status_string(int status)
{
    if (status < 0 || status >= SPEAD_PACKET_STATUS_COUNT)
        return "unknown packet error";
    return status_strings[status];
}

void spead_write_header(uint8_t *out, int heap_address_bits, int n_items)
{
    out[0] = SPEAD_MAGIC;
    out[1] = SPEAD_VERSION;
    out[2] = (uint8_t) ((64 - heap_address_bits) / 8);
    out[3] = (uint8_t) (heap_address_bits / 8);
    out[4] = 0;
    out[5] = 0;
    out[6] = (uint8_t) (n_items >> 8);
    out[7] = (uint8_t) n_items;
}

int spead_decode_packet(const uint8_t *data, size_t len, spead_packet *out)
{
    out->size = 0;
    if (len < SPEAD_HEADER_SIZE)
        return SPEAD_PACKET_TOO_SHORT;
    if (data[0] != SPEAD_MAGIC)
        return SPEAD_PACKET_BAD_MAGIC;
    if (data[1] != SPEAD_VERSION)
        return SPEAD_PACKET_BAD_VERSION;
    int id_bytes = data[2], addr_bytes = data[3];
    if (id_bytes + addr_bytes != 8 || addr_bytes < 1 || addr_bytes > 7)
        return SPEAD_PACKET_BAD_WIDTHS;
    int hab = addr_bytes * 8;
    int n = (data[6] << 8) | data[7];
    size_t after_pointers = SPEAD_HEADER_SIZE + (size_t) n * SPEAD_POINTER_SIZE;
    if (after_pointers > len)
        return SPEAD_PACKET_POINTERS_TRUNCATED;

    int64_t heap_cnt = -1, heap_length = -1, payload_offset = -1, payload_length = -1;
    int is_stop = 0;
    const uint8_t *p = data + SPEAD_HEADER_SIZE;
    for (int i = 0; i < n; i++, p += SPEAD_POINTER_SIZE) {
        uint64_t ptr = spead_load_be64(p);
        if (!spead_pointer_immediate(ptr))
            continue;
        uint64_t id = spead_pointer_id(ptr, hab);
        int64_t value = (int64_t) spead_pointer_address(ptr, hab);
        switch (id) {
        case SPEAD_HEAP_CNT_ID: heap_cnt = value; break;
        case SPEAD_HEAP_LENGTH_ID: heap_length = value; break;
        case SPEAD_PAYLOAD_OFFSET_ID: payload_offset = value; break;
        case SPEAD_PAYLOAD_LENGTH_ID: payload_length = value; break;
        case SPEAD_STREAM_CTRL_ID:
            if (value == SPEAD_CTRL_STREAM_STOP)
                is_stop = 1;
            break;
        default: break;
        }
    }
    /* from here on the packet's extent is known even if it is rejected */
    if (payload_length >= 0 && (uint64_t) payload_length <= len - after_pointers)
        out->size = after_pointers + (size_t) payload_length;
    if (heap_cnt < 0)
        return SPEAD_PACKET_NO_HEAP_CNT;
    if (payload_offset < 0)
        return SPEAD_PACKET_NO_PAYLOAD_OFFSET;
    if (payload_length < 0)
        return SPEAD_PACKET_NO_PAYLOAD_LENGTH;
    if ((uint64_t) payload_length > len - after_pointers)
        return SPEAD_PACKET_PAYLOAD_TRUNCATED;
    if (heap_length >= 0 && payload_offset + payload_length > heap_length)
        return SPEAD_PACKET_PAYLOAD_BEYOND_HEAP;

    out->heap_address_bits = hab;
    out->heap_cnt = heap_cnt;
    out->heap_length = heap_length;
    out->payload_offset = payload_offset;
    out->payload_length = payload_length;
    out->n_items = n;
    out->is_stop = is_stop;
    out->pointers = data + SPEAD_HEADER_SIZE;
    out->payload = data + after_pointers;
    out->size = after_pointers + (size_t) payload_length;
    return SPEAD_PACKET_OK;
}

/* Sort key for addressed pointers: address, then position in the list. */
typedef struct {
    uint64_t address;
    size_t index;
} addressed_ref;

static int compare_addressed(const void *a, const void *b)
{
    const addressed_ref *x = a, *y = b;
    if (x->address != y->address)
        return x->address < y->address ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

long spead_item_extents(const uint64_t *pointers, size_t n, int heap_address_bits,
                        uint64_t payload_size, spead_item_extent *out)
{
    size_t n_addr = 0;
    for (size_t i = 0; i < n; i++)
        if (!spead_pointer_immediate(pointers[i]))
            n_addr++;
    /* end[i]: where addressed pointer i ends (by its index in ``pointers``) */
    addressed_ref *refs = NULL;
    uint64_t *end = NULL;
    if (n_addr > 0) {
        refs = malloc(n_addr * sizeof(*refs));
        end = malloc(n * sizeof(*end));
        if (!refs || !end) {
            free(refs);
            free(end);
            return -2;
        }
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (spead_pointer_immediate(pointers[i]))
                continue;
            uint64_t address = spead_pointer_address(pointers[i], heap_address_bits);
            if (address > payload_size) {
                free(refs);
                free(end);
                return -1;
            }
            refs[k].address = address;
            refs[k].index = i;
            k++;
        }
        if (n_addr > 1)
            qsort(refs, n_addr, sizeof(*refs), compare_addressed);
        for (size_t k2 = 0; k2 < n_addr; k2++)
            end[refs[k2].index] = k2 + 1 < n_addr ? refs[k2 + 1].address : payload_size;
    }
    long count = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t ptr = pointers[i];
        uint64_t id = spead_pointer_id(ptr, heap_address_bits);
        if (id == SPEAD_NULL_ID)
            continue;
        uint64_t address = spead_pointer_address(ptr, heap_address_bits);
        spead_item_extent *e = &out[count];
        e->id = id;
        if (spead_pointer_immediate(ptr)) {
            e->immediate = 1;
            e->value = address;
            e->length = 0;
        } else {
            if (end[i] == address)
                continue;
            e->immediate = 0;
            e->value = address;
            e->length = end[i] - address;
        }
        count++;
    }
    free(refs);
    free(end);
    return count;
}
