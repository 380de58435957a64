#include "copy.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define HAVE_X86 1
#endif

#include "wire.h"

/* Below this a non-temporal copy is not worth it: the partial cache lines
 * at either end, written normally, would be most of it. */
#define NT_MIN_BYTES 256

#ifdef HAVE_X86
/* Each copies whole 64-byte cache lines with streaming stores, the
 * destination aligned to a line, so that each line is written in full and
 * never read for ownership; the partial lines at either end go through
 * memcpy. The caller has checked n >= NT_MIN_BYTES, and fences. */

/* Copy normally up to the destination's next cache line boundary. */
static inline void copy_to_line(uint8_t **d, const uint8_t **s, size_t *n)
{
    size_t head = (64 - ((uintptr_t) *d & 63)) & 63;
    memcpy(*d, *s, head);
    *d += head;
    *s += head;
    *n -= head;
}

__attribute__((target("sse2"))) static void *copy_nt_sse2(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    copy_to_line(&d, &s, &n);
    for (; n >= 64; n -= 64, s += 64, d += 64) {
        __m128i a = _mm_loadu_si128((const __m128i *) s);
        __m128i b = _mm_loadu_si128((const __m128i *) (s + 16));
        __m128i c = _mm_loadu_si128((const __m128i *) (s + 32));
        __m128i e = _mm_loadu_si128((const __m128i *) (s + 48));
        _mm_stream_si128((__m128i *) d, a);
        _mm_stream_si128((__m128i *) (d + 16), b);
        _mm_stream_si128((__m128i *) (d + 32), c);
        _mm_stream_si128((__m128i *) (d + 48), e);
    }
    memcpy(d, s, n);
    return dst;
}

__attribute__((target("avx2"))) static void *copy_nt_avx2(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    copy_to_line(&d, &s, &n);
    for (; n >= 128; n -= 128, s += 128, d += 128) {
        __m256i a = _mm256_loadu_si256((const __m256i *) s);
        __m256i b = _mm256_loadu_si256((const __m256i *) (s + 32));
        __m256i c = _mm256_loadu_si256((const __m256i *) (s + 64));
        __m256i e = _mm256_loadu_si256((const __m256i *) (s + 96));
        _mm256_stream_si256((__m256i *) d, a);
        _mm256_stream_si256((__m256i *) (d + 32), b);
        _mm256_stream_si256((__m256i *) (d + 64), c);
        _mm256_stream_si256((__m256i *) (d + 96), e);
    }
    if (n >= 64) {
        __m256i a = _mm256_loadu_si256((const __m256i *) s);
        __m256i b = _mm256_loadu_si256((const __m256i *) (s + 32));
        _mm256_stream_si256((__m256i *) d, a);
        _mm256_stream_si256((__m256i *) (d + 32), b);
        n -= 64;
        s += 64;
        d += 64;
    }
    memcpy(d, s, n);
    return dst;
}

__attribute__((target("avx512f"))) static void *copy_nt_avx512(void *dst, const void *src,
                                                              size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    copy_to_line(&d, &s, &n);
    for (; n >= 256; n -= 256, s += 256, d += 256) {
        __m512i a = _mm512_loadu_si512((const void *) s);
        __m512i b = _mm512_loadu_si512((const void *) (s + 64));
        __m512i c = _mm512_loadu_si512((const void *) (s + 128));
        __m512i e = _mm512_loadu_si512((const void *) (s + 192));
        _mm512_stream_si512((void *) d, a);
        _mm512_stream_si512((void *) (d + 64), b);
        _mm512_stream_si512((void *) (d + 128), c);
        _mm512_stream_si512((void *) (d + 192), e);
    }
    for (; n >= 64; n -= 64, s += 64, d += 64)
        _mm512_stream_si512((void *) d, _mm512_loadu_si512((const void *) s));
    memcpy(d, s, n);
    return dst;
}

typedef void *(*copy_impl)(void *, const void *, size_t);

/* The widest variant the CPU runs, chosen on first use (racing threads
 * choose the same). */
static copy_impl nt_copy;

static void choose_nt_copy(void)
{
    if (__atomic_load_n(&nt_copy, __ATOMIC_RELAXED))
        return;
    copy_impl f;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        f = copy_nt_avx512;
    else if (__builtin_cpu_supports("avx2"))
        f = copy_nt_avx2;
    else
        f = copy_nt_sse2;
    __atomic_store_n(&nt_copy, f, __ATOMIC_RELAXED);
}

/* Only handed out after choose_nt_copy(). */
static void *memcpy_nontemporal_unfenced(void *dst, const void *src, size_t n)
{
    if (n < NT_MIN_BYTES)
        return memcpy(dst, src, n);
    return __atomic_load_n(&nt_copy, __ATOMIC_RELAXED)(dst, src, n);
}

static void *memcpy_nontemporal(void *dst, const void *src, size_t n)
{
    memcpy_nontemporal_unfenced(dst, src, n);
    _mm_sfence();
    return dst;
}
#endif

spead_memcpy_fn spead_memcpy_function(int kind)
{
#ifdef HAVE_X86
    if (kind == SPEAD_MEMCPY_NONTEMPORAL) {
        choose_nt_copy();
        return memcpy_nontemporal;
    }
#else
    (void) kind;
#endif
    return memcpy;
}

spead_memcpy_fn spead_memcpy_nontemporal_unfenced(void)
{
#ifdef HAVE_X86
    choose_nt_copy();
    return memcpy_nontemporal_unfenced;
#else
    return memcpy;
#endif
}

void spead_store_fence(void)
{
#ifdef HAVE_X86
    _mm_sfence();
#else
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}
