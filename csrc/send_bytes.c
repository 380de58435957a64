#include "send_bytes.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

typedef struct {
    uint8_t *buf;
    size_t size;
    size_t capacity;
} bytes_writer;

/* The buffer is anonymous memory advised for transparent huge pages: with
 * 4 KiB pages, first-touch page faults would cost more than the copying. */
#define HUGE_PAGE ((size_t) 2 << 20)

/* The buffer of the last stream destroyed, kept for the next stream.
 *
 * Writing into memory the process has never touched costs a page fault per
 * page, each zeroing the page; on a virtual machine whose host reclaims the
 * guest's free memory (virtio-balloon free page reporting), the first touch
 * of such memory also costs the host a fault per page, and throughput falls
 * from memcpy speed (~10 GB/s) to about 1 GB/s.  Whether the pages a new
 * mapping gets were reclaimed depends on what the machine did in the last
 * seconds, so the same program ran either fast or ten times slower.
 * Unmapping a finished stream's buffer hands its pages back to be
 * reclaimed; keeping it (up to BYTES_CACHE_LIMIT) lets the next stream
 * write into memory that is already there. It is kept with MADV_FREE, so
 * that the kernel may still take the pages back if memory runs short. */
#define BYTES_CACHE_LIMIT ((size_t) 256 << 20)

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t *cache_buf;
static size_t cache_capacity;

/* Keep (buf, capacity) for a later stream, or unmap it. */
static void cache_put(uint8_t *buf, size_t capacity)
{
    if (capacity <= BYTES_CACHE_LIMIT) {
#ifdef MADV_FREE
        madvise(buf, capacity, MADV_FREE);
#endif
        pthread_mutex_lock(&cache_lock);
        if (capacity > cache_capacity) {
            uint8_t *old = cache_buf;
            size_t old_capacity = cache_capacity;
            cache_buf = buf;
            cache_capacity = capacity;
            buf = old;
            capacity = old_capacity;
        }
        pthread_mutex_unlock(&cache_lock);
    }
    if (buf)
        munmap(buf, capacity);
}

/* Take the kept buffer, if any. */
static uint8_t *cache_take(size_t *capacity)
{
    pthread_mutex_lock(&cache_lock);
    uint8_t *buf = cache_buf;
    *capacity = cache_capacity;
    cache_buf = NULL;
    cache_capacity = 0;
    pthread_mutex_unlock(&cache_lock);
    return buf;
}

static size_t round_up(size_t n)
{
    return (n + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
}

static uint8_t *map_aligned(size_t size)
{
    size_t span = size + HUGE_PAGE;
    uint8_t *p = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    uint8_t *a = (uint8_t *) (((uintptr_t) p + HUGE_PAGE - 1) & ~(uintptr_t) (HUGE_PAGE - 1));
    size_t head = (size_t) (a - p);
    if (head)
        munmap(p, head);
    size_t tail = span - head - size;
    if (tail)
        munmap(a + size, tail);
    madvise(a, size, MADV_HUGEPAGE);
    return a;
}

static int reserve(bytes_writer *w, size_t extra)
{
    if (!w->buf)
        w->buf = cache_take(&w->capacity);
    if (w->capacity - w->size >= extra)
        return 0;
    size_t need = w->size + extra;
    if (need < w->size || need > SIZE_MAX / 2)
        return ENOMEM;
    size_t cap = w->capacity ? w->capacity : HUGE_PAGE;
    while (cap < need)
        cap *= 2;
    cap = round_up(cap);
    uint8_t *nb = map_aligned(cap);
    if (!nb)
        return ENOMEM;
    if (w->buf) {
        /* Move the old pages rather than copy them. */
        if (mremap(w->buf, w->capacity, w->capacity, MREMAP_MAYMOVE | MREMAP_FIXED, nb)
            == MAP_FAILED) {
            memcpy(nb, w->buf, w->size);
            munmap(w->buf, w->capacity);
        }
    }
    w->buf = nb;
    w->capacity = cap;
    return 0;
}

static int bytes_write_group(send_stream *s, send_req *req)
{
    bytes_writer *w = s->writer;
    uint64_t total = 0;
    for (size_t i = 0; i < req->n_heaps; i++)
        total += req->heaps[i].layout.total_bytes;
    if (total > SIZE_MAX || reserve(w, (size_t) total))
        return ENOMEM;
    send_group_iter g;
    uint64_t packets = send_req_start(req, &g);
    for (uint64_t k = 0; k < packets; k++) {
        size_t hdr, payload;
        size_t i = send_stream_paced_next(s, &g, w->buf + w->size, &hdr, &payload);
        if (i == SIZE_MAX)
            break;
        send_stream_pace_account(s, hdr + payload, &req->heaps[i]);
        send_packetizer_copy(&req->pz[i], w->buf + w->size + hdr, payload);
        w->size += hdr + payload;
    }
    return 0;
}

static void bytes_destroy(send_stream *s)
{
    bytes_writer *w = s->writer;
    if (w) {
        if (w->buf)
            cache_put(w->buf, w->capacity);
        free(w);
    }
}

static const send_writer_ops bytes_ops = {bytes_write_group, bytes_destroy};

send_stream *send_bytes_stream_new(tpool_t *tp, const send_config *config)
{
    bytes_writer *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    send_stream *s = send_stream_new(&bytes_ops, w, tp, config, 1);
    if (!s)
        free(w);
    return s;
}

const uint8_t *send_bytes_data(send_stream *s, size_t *size)
{
    bytes_writer *w = s->writer;
    *size = w->size;
    return w->buf;
}

void send_bytes_copy_out(uint8_t *dst, const uint8_t *src, size_t size)
{
    /* dst is usually fresh memory: ask for huge pages before touching it. */
    if (size >= 2 * HUGE_PAGE) {
        uintptr_t start = ((uintptr_t) dst + HUGE_PAGE - 1) & ~(uintptr_t) (HUGE_PAGE - 1);
        uintptr_t end = ((uintptr_t) dst + size) & ~(uintptr_t) (HUGE_PAGE - 1);
        if (end > start)
            madvise((void *) start, end - start, MADV_HUGEPAGE);
    }
    if (size > 0) /* an empty stream has no buffer: memcpy from NULL is undefined */
        memcpy(dst, src, size);
}
