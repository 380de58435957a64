#include "heap.h"

#include <stdlib.h>

#include "wire.h"

void spead_heap_release_payload(spead_heap *h)
{
    if (h->payload)
        spead_release(h->alloc, h->payload, h->handle);
    if (h->alloc)
        spead_allocator_decref(h->alloc);
    h->payload = NULL;
    h->handle = NULL;
    h->alloc = NULL;
}

void spead_heap_free(spead_heap *h)
{
    if (!h)
        return;
    spead_heap_release_payload(h);
    free(h->pointers);
    free(h->ranges);
    free(h);
}

int spead_heap_has_ctrl(const spead_heap *h, uint64_t value)
{
    for (size_t i = 0; i < h->n_pointers; i++) {
        uint64_t ptr = h->pointers[i];
        if (spead_pointer_immediate(ptr)
            && spead_pointer_id(ptr, h->heap_address_bits) == SPEAD_STREAM_CTRL_ID
            && spead_pointer_address(ptr, h->heap_address_bits) == value)
            return 1;
    }
    return 0;
}
