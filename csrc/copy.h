/* Copies from packets into heap memory: plain memcpy, or non-temporal
 * stores that bypass the cache (for heaps the consumer will not read soon). */
#ifndef SPEAD2_COPY_H
#define SPEAD2_COPY_H

#include <stddef.h>

typedef void *(*spead_memcpy_fn)(void *dst, const void *src, size_t n);

/* SPEAD_MEMCPY_STD or SPEAD_MEMCPY_NONTEMPORAL (wire.h); plain memcpy where
 * the CPU has no non-temporal stores. */
spead_memcpy_fn spead_memcpy_function(int kind);

/* Non-temporal stores without the fence that ends each copy of
 * spead_memcpy_function(SPEAD_MEMCPY_NONTEMPORAL): other threads may not
 * see the data until the writer calls spead_store_fence(). For writers that
 * hand their output on at a few known points, after many copies. */
spead_memcpy_fn spead_memcpy_nontemporal_unfenced(void);
void spead_store_fence(void);

#endif
