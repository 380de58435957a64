#include "chunk_place.h"

#include <string.h>

/* v / d, with a shift when d is a power of two (the usual chunk step and
 * divisors): a 64-bit division costs tens of cycles, on every heap. */
static inline uint64_t quotient(uint64_t v, uint64_t d)
{
    if ((d & (d - 1)) == 0)
        return v >> __builtin_ctzll(d);
    return v / d;
}

void spead_place_by_rule(spead_chunk_place_data *d, size_t size, void *user)
{
    const spead_place_rule *rule = user;
    (void) size;
    const int64_t *items = d->items;
    int64_t value = items[rule->chunk_item];
    if (value < 0 || items[rule->length_item] != (int64_t) rule->heap_size)
        return;
    uint64_t v = (uint64_t) value;
    uint64_t chunk_id = quotient(v, rule->chunk_step);
    uint64_t rem = v - chunk_id * rule->chunk_step;
    uint64_t index = 0;
    for (size_t i = 0; i < rule->n_axes; i++) {
        const spead_place_axis *axis = &rule->axes[i];
        uint64_t pos;
        if (axis->from_chunk_item) {
            pos = quotient(rem, axis->divisor);
        } else {
            int64_t a = items[axis->item];
            if (a < 0)
                return;
            pos = quotient((uint64_t) a, axis->divisor);
        }
        if (pos >= axis->count)
            return;
        index = index * axis->count + pos;
    }
    d->chunk_id = (int64_t) chunk_id;
    d->heap_index = (size_t) index;
    d->heap_offset = (size_t) (index * rule->heap_size);
    if (rule->extra_value) {
        memcpy(d->extra, &v, sizeof(v));
        d->extra_offset = (size_t) index * sizeof(v);
        d->extra_size = sizeof(v);
    }
}
