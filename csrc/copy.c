#include "copy.h"

#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "wire.h"

#ifdef __SSE2__
static void *memcpy_nontemporal(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    /* head: bring the destination to 16-byte alignment */
    size_t head = (16 - ((uintptr_t) d & 15)) & 15;
    if (head > n)
        head = n;
    memcpy(d, s, head);
    d += head;
    s += head;
    n -= head;
    size_t blocks = n / 64;
    for (size_t i = 0; i < blocks; i++) {
        __m128i a = _mm_loadu_si128((const __m128i *) s);
        __m128i b = _mm_loadu_si128((const __m128i *) (s + 16));
        __m128i c = _mm_loadu_si128((const __m128i *) (s + 32));
        __m128i e = _mm_loadu_si128((const __m128i *) (s + 48));
        _mm_stream_si128((__m128i *) d, a);
        _mm_stream_si128((__m128i *) (d + 16), b);
        _mm_stream_si128((__m128i *) (d + 32), c);
        _mm_stream_si128((__m128i *) (d + 48), e);
        s += 64;
        d += 64;
    }
    n -= blocks * 64;
    _mm_sfence();
    memcpy(d, s, n);
    return dst;
}
#endif

spead_memcpy_fn spead_memcpy_function(int kind)
{
#ifdef __SSE2__
    if (kind == SPEAD_MEMCPY_NONTEMPORAL)
        return memcpy_nontemporal;
#else
    (void) kind;
#endif
    return memcpy;
}
