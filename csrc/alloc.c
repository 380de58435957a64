#include "alloc.h"
#include "logq.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

void spead_allocator_incref(spead_allocator *a)
{
    __atomic_add_fetch(&a->refs, 1, __ATOMIC_RELAXED);
}

void spead_allocator_decref(spead_allocator *a)
{
    if (__atomic_sub_fetch(&a->refs, 1, __ATOMIC_ACQ_REL) == 0)
        a->destroy(a);
}

/* ---- plain allocation ----
 *
 * Heap-sized blocks freed by the consumer are kept in a small cache and
 * handed out again: without it every large heap would be fresh memory from
 * the kernel, and page faults would cost more than the copy into it.
 */

#define CACHE_MIN_SIZE (64 * 1024)
#define CACHE_SLOTS 8
#define CACHE_MAX_BYTES ((size_t) 64 << 20)

typedef struct {
    spead_allocator base;
    pthread_mutex_t lock;
    void *ptr[CACHE_SLOTS];
    size_t size[CACHE_SLOTS];
    int n;
    size_t bytes;
} malloc_allocator;

static void *malloc_allocate(spead_allocator *self, size_t size, void **handle)
{
    malloc_allocator *m = (malloc_allocator *) self;
    if (size == 0)
        size = 1;
    if (size >= CACHE_MIN_SIZE) {
        int best = -1;
        pthread_mutex_lock(&m->lock);
        /* the most recently freed block that fits: it is the likeliest to
         * still be in the CPU caches */
        for (int i = m->n - 1; i >= 0; i--) {
            if (m->size[i] >= size && m->size[i] / 2 <= size) {
                best = i;
                break;
            }
        }
        if (best >= 0) {
            void *p = m->ptr[best];
            size_t got = m->size[best];
            m->n--;
            memmove(&m->ptr[best], &m->ptr[best + 1], (m->n - best) * sizeof(void *));
            memmove(&m->size[best], &m->size[best + 1], (m->n - best) * sizeof(size_t));
            m->bytes -= got;
            pthread_mutex_unlock(&m->lock);
            *handle = (void *) (uintptr_t) got;
            return p;
        }
        pthread_mutex_unlock(&m->lock);
    }
    void *p = NULL;
    /* 64-byte alignment suits cache lines and non-temporal stores */
    if (posix_memalign(&p, 64, size) != 0)
        return NULL;
    *handle = (void *) (uintptr_t) size;
    return p;
}

static void malloc_release(spead_allocator *self, void *ptr, void *handle)
{
    malloc_allocator *m = (malloc_allocator *) self;
    size_t size = (size_t) (uintptr_t) handle;
    if (size >= CACHE_MIN_SIZE) {
        pthread_mutex_lock(&m->lock);
        if (m->n < CACHE_SLOTS && m->bytes + size <= CACHE_MAX_BYTES) {
            m->ptr[m->n] = ptr;
            m->size[m->n] = size;
            m->n++;
            m->bytes += size;
            ptr = NULL;
        }
        pthread_mutex_unlock(&m->lock);
    }
    free(ptr);
}

static void malloc_destroy(spead_allocator *self)
{
    malloc_allocator *m = (malloc_allocator *) self;
    for (int i = 0; i < m->n; i++)
        free(m->ptr[i]);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static void simple_destroy(spead_allocator *self)
{
    free(self);
}

spead_allocator *spead_malloc_allocator_new(void)
{
    malloc_allocator *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    pthread_mutex_init(&a->lock, NULL);
    a->base.refs = 1;
    a->base.allocate = malloc_allocate;
    a->base.release = malloc_release;
    a->base.destroy = malloc_destroy;
    return &a->base;
}

/* ---- mmap ---- */

typedef struct {
    spead_allocator base;
    int flags;
    int prefer_huge;
} mmap_allocator;

#define HUGE_PAGE ((size_t) 2 << 20)

static void *mmap_allocate(spead_allocator *self, size_t size, void **handle)
{
    mmap_allocator *m = (mmap_allocator *) self;
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | m->flags;
    if (size == 0)
        size = 1;
    if (m->prefer_huge) {
        /* hugetlbfs pages, if the system has reserved any */
        size_t huge = (size + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
        void *p = mmap(NULL, huge, PROT_READ | PROT_WRITE, flags | MAP_HUGETLB, -1, 0);
        if (p != MAP_FAILED) {
            *handle = (void *) (uintptr_t) huge;
            return p;
        }
    }
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    if (m->prefer_huge && size >= HUGE_PAGE)
        madvise(p, size, MADV_HUGEPAGE);    /* transparent huge pages, where enabled */
    *handle = (void *) (uintptr_t) size;
    return p;
}

static void mmap_release(spead_allocator *self, void *ptr, void *handle)
{
    (void) self;
    munmap(ptr, (size_t) (uintptr_t) handle);
}

spead_allocator *spead_mmap_allocator_new(int flags, int prefer_huge)
{
    mmap_allocator *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->base.refs = 1;
    a->base.allocate = mmap_allocate;
    a->base.release = mmap_release;
    a->base.destroy = simple_destroy;
    a->flags = flags;
    a->prefer_huge = prefer_huge;
    return &a->base;
}

/* ---- pool ---- */

typedef struct pool_buffer {
    struct pool_buffer *next;
    void *ptr;
    void *base_handle;
    int pooled;
} pool_buffer;

typedef struct {
    spead_allocator base;
    pthread_mutex_t lock;
    tpool_t *tp;
    spead_allocator *under;
    size_t lower, upper, max_free, initial, low_water;
    pool_buffer *free_list;
    size_t n_free;               /* never above max_free */
    /* A refill task is queued or running.  Cleared only by its release
     * callback, which the thread pool calls exactly once, after the task or
     * instead of it: so two refills never overlap. */
    int refilling;
    size_t refills;
    int warn_on_empty;           /* read and written atomically */
} pool_allocator;

static pool_buffer *pool_new_buffer(pool_allocator *p)
{
    pool_buffer *b = malloc(sizeof(*b));
    if (!b)
        return NULL;
    b->ptr = spead_allocate(p->under, p->upper, &b->base_handle);
    if (!b->ptr) {
        free(b);
        return NULL;
    }
    b->pooled = 1;
    b->next = NULL;
    return b;
}

static void pool_free_buffer(pool_allocator *p, pool_buffer *b)
{
    spead_release(p->under, b->ptr, b->base_handle);
    free(b);
}

/* Lock held. Whether a refill should add another buffer. */
static int pool_wants_buffer(const pool_allocator *p)
{
    return p->n_free < p->initial && p->n_free < p->max_free;
}

static void pool_refill_task(void *arg)
{
    pool_allocator *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        if (!pool_wants_buffer(p)) {
            p->refills++;
            pthread_mutex_unlock(&p->lock);
            return;
        }
        pthread_mutex_unlock(&p->lock);
        pool_buffer *b = pool_new_buffer(p);
        if (!b)
            return;
        /* buffers released while this one was being made may have filled
         * the pool: ask again under the lock before adding it */
        pthread_mutex_lock(&p->lock);
        if (pool_wants_buffer(p)) {
            b->next = p->free_list;
            p->free_list = b;
            p->n_free++;
            b = NULL;
        }
        pthread_mutex_unlock(&p->lock);
        if (b)
            pool_free_buffer(p, b);
    }
}

static void pool_refill_release(void *arg)
{
    pool_allocator *p = arg;
    pthread_mutex_lock(&p->lock);
    p->refilling = 0;
    pthread_mutex_unlock(&p->lock);
    spead_allocator_decref(&p->base);
}

static void *pool_allocate(spead_allocator *self, size_t size, void **handle)
{
    pool_allocator *p = (pool_allocator *) self;
    pool_buffer *b = NULL;
    if (size >= p->lower && size <= p->upper) {
        int start_refill = 0;
        pthread_mutex_lock(&p->lock);
        b = p->free_list;
        if (b) {
            p->free_list = b->next;
            p->n_free--;
        }
        if (p->tp && !p->refilling && p->n_free < p->low_water) {
            p->refilling = 1;
            start_refill = 1;
        }
        pthread_mutex_unlock(&p->lock);
        if (start_refill) {
            spead_allocator_incref(self);
            tpool_post(p->tp, pool_refill_task, p, pool_refill_release);
        }
        if (!b) {
            spead_logq *q = spead_logq_current();
            if (q && __atomic_load_n(&p->warn_on_empty, __ATOMIC_RELAXED))
                spead_logq_push(q, SPEAD_LOG_WARNING,
                                "memory pool is empty when allocating %zu bytes", size);
            b = pool_new_buffer(p);
        }
        if (!b)
            return NULL;
    } else {
        b = malloc(sizeof(*b));
        if (!b)
            return NULL;
        b->ptr = spead_allocate(p->under, size, &b->base_handle);
        if (!b->ptr) {
            free(b);
            return NULL;
        }
        b->pooled = 0;
    }
    *handle = b;
    return b->ptr;
}

static void pool_release(spead_allocator *self, void *ptr, void *handle)
{
    pool_allocator *p = (pool_allocator *) self;
    pool_buffer *b = handle;
    (void) ptr;
    if (b->pooled) {
        pthread_mutex_lock(&p->lock);
        if (p->n_free < p->max_free) {
            b->next = p->free_list;
            p->free_list = b;
            p->n_free++;
            b = NULL;
        }
        pthread_mutex_unlock(&p->lock);
    }
    if (b)
        pool_free_buffer(p, b);
}

static void pool_destroy(spead_allocator *self)
{
    pool_allocator *p = (pool_allocator *) self;
    pool_buffer *b = p->free_list;
    while (b) {
        pool_buffer *next = b->next;
        pool_free_buffer(p, b);
        b = next;
    }
    spead_allocator_decref(p->under);
    if (p->tp)
        tpool_decref(p->tp);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

spead_allocator *spead_pool_allocator_new(tpool_t *tp, size_t lower, size_t upper, size_t max_free,
                                          size_t initial, size_t low_water, spead_allocator *base)
{
    pool_allocator *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->base.refs = 1;
    p->base.allocate = pool_allocate;
    p->base.release = pool_release;
    p->base.destroy = pool_destroy;
    pthread_mutex_init(&p->lock, NULL);
    p->lower = lower;
    p->upper = upper;
    p->max_free = max_free;
    p->initial = initial;
    p->low_water = low_water;
    p->warn_on_empty = 1;
    if (base) {
        spead_allocator_incref(base);
        p->under = base;
    } else {
        p->under = spead_malloc_allocator_new();
        if (!p->under) {
            free(p);
            return NULL;
        }
    }
    if (tp) {
        tpool_incref(tp);
        p->tp = tp;
    }
    for (size_t i = 0; i < initial && i < max_free; i++) {
        pool_buffer *b = pool_new_buffer(p);
        if (!b)
            break;
        b->next = p->free_list;
        p->free_list = b;
        p->n_free++;
    }
    return &p->base;
}

size_t spead_pool_free_count(spead_allocator *pool)
{
    pool_allocator *p = (pool_allocator *) pool;
    pthread_mutex_lock(&p->lock);
    size_t n = p->n_free;
    pthread_mutex_unlock(&p->lock);
    return n;
}

size_t spead_pool_refills(spead_allocator *pool)
{
    pool_allocator *p = (pool_allocator *) pool;
    pthread_mutex_lock(&p->lock);
    size_t n = p->refills;
    pthread_mutex_unlock(&p->lock);
    return n;
}

void spead_pool_set_warn_on_empty(spead_allocator *pool, int warn)
{
    __atomic_store_n(&((pool_allocator *) pool)->warn_on_empty, warn != 0, __ATOMIC_RELAXED);
}

int spead_pool_get_warn_on_empty(spead_allocator *pool)
{
    return __atomic_load_n(&((pool_allocator *) pool)->warn_on_empty, __ATOMIC_RELAXED);
}
