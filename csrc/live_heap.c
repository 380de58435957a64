#include "live_heap.h"

#include <stdlib.h>
#include <string.h>

static const char *const feed_result_strings[SPEAD_FEED_RESULT_COUNT] = {
    "accepted",
    "stop item",
    "duplicate payload",
    "packet has no HEAP_LENGTH and unsized heaps are not allowed",
    "heap exceeds the heap size limit",
    "out of order within the heap",
    "HEAP_LENGTH differs from earlier packets of the heap",
    "HEAP_LENGTH is smaller than the data and items the heap already has",
    "flavour differs from earlier packets of the heap",
    "payload extends past the heap length",
    "payload partly overlaps data already received",
    "item pointers would take more than the heap size limit",
    "cannot allocate memory for the heap",
};

const char *spead_feed_result_string(int result)
{
    if (result < 0 || result >= SPEAD_FEED_RESULT_COUNT)
        return "unknown";
    return feed_result_strings[result];
}

/* Below this many pointers a linear scan finds repeats faster than a hash. */
#define INLINE_POINTERS 16

/* "Dropped": no destination. */
static void dest_reset(spead_heap_dest *d)
{
    d->data = NULL;
    d->capacity = 0;
    d->chunk = NULL;
    d->chunk_id = -1;
    d->heap_index = 0;
    d->copy = NULL;
}

void live_heap_init(live_heap *h, int64_t cnt, int heap_address_bits)
{
    /* Field by field rather than memset: the compiler turns a memset of the
     * whole struct into ``rep stos``, and a load from memory just written by
     * a string store cannot be forwarded from the store buffer; it waits for
     * every older store to reach the cache, including those of the previous
     * packet's payload copy, which serialises the next packet behind it. */
    h->cnt = cnt;
    h->heap_address_bits = heap_address_bits;
    h->heap_length = -1;
    h->received = 0;
    h->min_length = 0;
    h->data_end = 0;
    h->payload = NULL;
    h->capacity = 0;
    h->handle = NULL;
    h->alloc = NULL;
    h->ranges = NULL;
    h->n_ranges = 0;
    h->cap_ranges = 0;
    h->pointers = NULL;
    h->n_pointers = 0;
    h->cap_pointers = 0;
    h->seen = NULL;
    h->seen_cap = 0;
    h->packets = 0;
    h->placed = 0;
    dest_reset(&h->dest);
}

void live_heap_clear(live_heap *h)
{
    if (h->payload)
        spead_release(h->alloc, h->payload, h->handle);
    if (h->alloc)
        spead_allocator_decref(h->alloc);
    free(h->ranges);
    free(h->pointers);
    free(h->seen);
    live_heap_init(h, 0, 0);
}

int live_heap_is_complete(const live_heap *h)
{
    return h->heap_length >= 0 && h->received == (uint64_t) h->heap_length
           && h->received == h->min_length;
}

int live_heap_is_contiguous(const live_heap *h)
{
    return h->received == h->min_length;
}

/* ---- payload ranges (out-of-order mode) ---- */

enum { RANGE_NEW, RANGE_DUPLICATE, RANGE_OVERLAP };

/* Classify [start, end) against what has arrived, without changing anything. */
static int range_check(const live_heap *h, uint64_t start, uint64_t end, size_t *pos)
{
    size_t n = h->n_ranges;
    /* common case: the packet continues the last range */
    if (n > 0 && h->ranges[n - 1].end <= start) {
        *pos = n;
        return RANGE_NEW;
    }
    /* first range that ends after start */
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (h->ranges[mid].end <= start)
            lo = mid + 1;
        else
            hi = mid;
    }
    *pos = lo;
    if (lo < n && h->ranges[lo].start < end) {
        if (h->ranges[lo].start <= start && end <= h->ranges[lo].end)
            return RANGE_DUPLICATE;
        return RANGE_OVERLAP;
    }
    return RANGE_NEW;
}

/* Record [start, end), known to be new, at position ``pos``. */
static int range_insert(live_heap *h, uint64_t start, uint64_t end, size_t pos)
{
    size_t n = h->n_ranges;
    int merge_left = pos > 0 && h->ranges[pos - 1].end == start;
    int merge_right = pos < n && h->ranges[pos].start == end;
    if (merge_left && merge_right) {
        h->ranges[pos - 1].end = h->ranges[pos].end;
        memmove(&h->ranges[pos], &h->ranges[pos + 1], (n - pos - 1) * sizeof(spead_range));
        h->n_ranges--;
    } else if (merge_left) {
        h->ranges[pos - 1].end = end;
    } else if (merge_right) {
        h->ranges[pos].start = start;
    } else {
        if (n == h->cap_ranges) {
            size_t cap = n ? n * 2 : 4;
            spead_range *r = realloc(h->ranges, cap * sizeof(*r));
            if (!r)
                return -1;
            h->ranges = r;
            h->cap_ranges = cap;
        }
        memmove(&h->ranges[pos + 1], &h->ranges[pos], (n - pos) * sizeof(spead_range));
        h->ranges[pos].start = start;
        h->ranges[pos].end = end;
        h->n_ranges++;
    }
    return 0;
}

/* ---- item pointers, each kept once ---- */

static size_t seen_slot(uint64_t ptr, size_t cap)
{
    return (size_t) ((ptr * UINT64_C(11400714819323198485)) >> 32) & (cap - 1);
}

/* The hash set marks empty slots with 0, so pointer value 0 (a NULL item at
 * address 0) is stored under the key ~0, which it shares with pointer ~0.
 * Lookups of those two values therefore scan the list instead. */
static int seen_insert(uint64_t *set, size_t cap, uint64_t ptr)
{
    uint64_t key = ptr ? ptr : ~UINT64_C(0);
    for (size_t i = seen_slot(key, cap);; i = (i + 1) & (cap - 1)) {
        if (set[i] == key)
            return 0;
        if (set[i] == 0) {
            set[i] = key;
            return 1;
        }
    }
}

static int seen_grow(live_heap *h, size_t want)
{
    size_t cap = 64;
    while (cap < 2 * want)
        cap *= 2;
    if (cap <= h->seen_cap)
        return 0;
    uint64_t *set = calloc(cap, sizeof(*set));
    if (!set)
        return -1;
    for (size_t i = 0; i < h->n_pointers; i++)
        seen_insert(set, cap, h->pointers[i]);
    free(h->seen);
    h->seen = set;
    h->seen_cap = cap;
    return 0;
}

/* Whether ``ptr`` is new to the heap; records it if so. -1 on failure. */
static int pointer_is_new(live_heap *h, uint64_t ptr)
{
    if (h->n_pointers < INLINE_POINTERS || ptr == 0 || ptr == ~UINT64_C(0)) {
        for (size_t i = 0; i < h->n_pointers; i++)
            if (h->pointers[i] == ptr)
                return 0;
        if (h->n_pointers < INLINE_POINTERS)
            return 1;
        /* 0 and ~0 share a hash key: they were checked by the scan above */
        if (seen_grow(h, h->n_pointers + 1) != 0)
            return -1;
        seen_insert(h->seen, h->seen_cap, ptr);
        return 1;
    }
    if (seen_grow(h, h->n_pointers + 1) != 0)
        return -1;
    return seen_insert(h->seen, h->seen_cap, ptr);
}

static int pointer_append(live_heap *h, uint64_t ptr)
{
    if (h->n_pointers == h->cap_pointers) {
        size_t cap = h->cap_pointers ? h->cap_pointers * 2 : 8;
        uint64_t *p = realloc(h->pointers, cap * sizeof(*p));
        if (!p)
            return -1;
        h->pointers = p;
        h->cap_pointers = cap;
    }
    h->pointers[h->n_pointers++] = ptr;
    return 0;
}

/* Whether a pointer belongs in the heap's item list: header items (HEAP_CNT
 * to PAYLOAD_LENGTH) are the packets' business; NULL items stay because
 * they mark where an addressed item ends. */
static int keeps_pointer(uint64_t id)
{
    return id == SPEAD_NULL_ID || id > SPEAD_PAYLOAD_LENGTH_ID;
}

/* ---- payload memory ---- */

static int reserve(live_heap *h, uint64_t need, int exact, const spead_live_heap_env *env)
{
    if (need <= h->capacity)
        return 0;
    uint64_t cap = need;
    if (!exact) {
        /* final size unknown: grow geometrically, within the limit */
        if (h->capacity * 2 > cap)
            cap = h->capacity * 2;
        if (cap > env->max_heap_size)
            cap = env->max_heap_size;
    }
    void *handle = NULL;
    uint8_t *p = spead_allocate(env->alloc, (size_t) cap, &handle);
    if (!p)
        return -1;
    if (h->payload) {
        /* only the received ranges hold data, but copying the prefix is simpler */
        memcpy(p, h->payload, (size_t) h->data_end);
        spead_release(h->alloc, h->payload, h->handle);
        spead_allocator_decref(h->alloc);
    }
    spead_allocator_incref(env->alloc);
    h->alloc = env->alloc;
    h->payload = p;
    h->handle = handle;
    h->capacity = cap;
    return 0;
}

int live_heap_add_packet(live_heap *h, const spead_packet *pkt, const spead_live_heap_env *env)
{
    uint64_t offset = (uint64_t) pkt->payload_offset;
    uint64_t length = (uint64_t) pkt->payload_length;
    uint64_t end = offset + length;
    int hab = pkt->heap_address_bits;

    if (h->heap_length >= 0 && pkt->heap_length >= 0 && pkt->heap_length != h->heap_length)
        return SPEAD_FEED_LENGTH_MISMATCH;
    if (pkt->heap_length >= 0 && (uint64_t) pkt->heap_length < h->min_length)
        return SPEAD_FEED_LENGTH_TOO_SMALL;
    if (hab != h->heap_address_bits)
        return SPEAD_FEED_FLAVOUR_MISMATCH;
    if (h->heap_length >= 0 && end > (uint64_t) h->heap_length)
        return SPEAD_FEED_PAST_HEAP_LENGTH;
    if (end > env->max_heap_size)
        return SPEAD_FEED_HEAP_TOO_LARGE;

    /* the packet's item pointers: addresses within the limit, and room for them */
    uint64_t max_address = 0;
    size_t n_kept = 0;
    const uint8_t *p = pkt->pointers;
    for (int i = 0; i < pkt->n_items; i++, p += SPEAD_POINTER_SIZE) {
        uint64_t ptr = spead_load_be64(p);
        if (!keeps_pointer(spead_pointer_id(ptr, hab)))
            continue;
        n_kept++;
        if (!spead_pointer_immediate(ptr)) {
            uint64_t address = spead_pointer_address(ptr, hab);
            if (address > max_address)
                max_address = address;
        }
    }
    if (max_address > env->max_heap_size)
        return SPEAD_FEED_HEAP_TOO_LARGE;
    uint64_t pointer_limit = env->max_heap_size / sizeof(uint64_t);
    if (h->n_pointers > pointer_limit || n_kept > pointer_limit - h->n_pointers)
        return SPEAD_FEED_POINTERS_LIMIT;

    /* is the payload new? */
    size_t range_pos = 0;
    if (length > 0) {
        if (env->allow_out_of_order) {
            int r = range_check(h, offset, end, &range_pos);
            if (r == RANGE_DUPLICATE)
                return SPEAD_FEED_DUPLICATE;
            if (r == RANGE_OVERLAP)
                return SPEAD_FEED_OVERLAP;
        } else if (offset != h->received) {
            return offset < h->received && end <= h->received ? SPEAD_FEED_DUPLICATE
                                                               : SPEAD_FEED_OUT_OF_ORDER;
        }
    } else if (!env->allow_out_of_order && offset != h->received) {
        return SPEAD_FEED_OUT_OF_ORDER;
    }

    /* room for the payload (a placement has its own) */
    const spead_heap_placement *placement = env->placement;
    if (length > 0 && !placement) {
        int known = pkt->heap_length >= 0 || h->heap_length >= 0;
        uint64_t need = pkt->heap_length >= 0 ? (uint64_t) pkt->heap_length
                        : h->heap_length >= 0 ? (uint64_t) h->heap_length : end;
        if (reserve(h, need, known, env) != 0)
            return SPEAD_FEED_NO_MEMORY;
    }
    if (length > 0 && env->allow_out_of_order && range_insert(h, offset, end, range_pos) != 0)
        return SPEAD_FEED_NO_MEMORY;

    /* accepted: from here on the heap changes */
    if (pkt->heap_length >= 0 && h->heap_length < 0)
        h->heap_length = pkt->heap_length;
    if (h->heap_length >= 0 && (uint64_t) h->heap_length > h->min_length)
        h->min_length = (uint64_t) h->heap_length;
    if (end > h->min_length)
        h->min_length = end;
    if (max_address > h->min_length)
        h->min_length = max_address;
    if (placement) {
        /* a chunk stream keeps no item pointers: its heaps are never read
         * item by item. As in spead2, a heap is placed when its payload
         * first needs memory: a heap of length 0 never is. */
        if (!h->placed && h->heap_length > 0) {
            dest_reset(&h->dest);
            placement->place(placement->ctx, pkt, &h->dest);
            h->placed = 1;
        }
        if (length > 0 && h->dest.data && end <= h->dest.capacity
            && placement->admit(placement->ctx, &h->dest, pkt))
            (h->dest.copy ? h->dest.copy : env->copy)(h->dest.data + offset, pkt->payload,
                                                      (size_t) length);
    } else {
        p = pkt->pointers;
        for (int i = 0; i < pkt->n_items; i++, p += SPEAD_POINTER_SIZE) {
            uint64_t ptr = spead_load_be64(p);
            if (!keeps_pointer(spead_pointer_id(ptr, hab)))
                continue;
            int fresh = pointer_is_new(h, ptr);
            if (fresh < 0 || (fresh && pointer_append(h, ptr) != 0))
                return SPEAD_FEED_NO_MEMORY;
        }
        /* a reader may have received the payload straight into place */
        if (length > 0 && h->payload + offset != pkt->payload)
            env->copy(h->payload + offset, pkt->payload, (size_t) length);
    }
    h->received += length;
    if (end > h->data_end)
        h->data_end = end;
    h->packets++;
    return SPEAD_FEED_ACCEPTED;
}

spead_heap *live_heap_finish(live_heap *h, int bug_compat, int keep_ranges)
{
    spead_heap *out = calloc(1, sizeof(*out));
    if (!out) {
        live_heap_clear(h);
        return NULL;
    }
    out->cnt = h->cnt;
    out->heap_address_bits = h->heap_address_bits;
    out->bug_compat = bug_compat;
    out->contiguous = live_heap_is_contiguous(h);
    out->heap_length = h->heap_length;
    out->received_length = h->received;
    out->payload_size = h->min_length;
    if (out->contiguous && h->payload) {
        out->payload = h->payload;
        out->handle = h->handle;
        out->alloc = h->alloc;
        h->payload = NULL;
        h->alloc = NULL;
    }
    out->pointers = h->pointers;
    out->n_pointers = h->n_pointers;
    h->pointers = NULL;
    if (keep_ranges) {
        if (h->n_ranges > 0) {
            out->ranges = h->ranges;
            out->n_ranges = h->n_ranges;
            h->ranges = NULL;
        } else if (h->received > 0) {
            /* in-order mode keeps no ranges: what arrived is one run from 0 */
            out->ranges = malloc(sizeof(spead_range));
            if (out->ranges) {
                out->ranges[0].start = 0;
                out->ranges[0].end = h->received;
                out->n_ranges = 1;
            }
        }
    }
    live_heap_clear(h);
    return out;
}
