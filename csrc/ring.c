#include "ring.h"

#include "deadline.h"
#include "efd.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

int spead_ring_init(spead_ring *r, size_t capacity)
{
    /* the storage starts a little over capacity and may double: refuse
     * capacities whose slot count would wrap around */
    if (capacity > SIZE_MAX / (4 * sizeof(void *))) {
        errno = ENOMEM;
        return -1;
    }
    r->storage = capacity + 4;
    r->items = calloc(r->storage, sizeof(void *));
    if (!r->items)
        return -1;
    r->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK | EFD_SEMAPHORE);
    if (r->efd < 0) {
        free(r->items);
        return -1;
    }
    pthread_mutex_init(&r->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cond, &ca);
    pthread_condattr_destroy(&ca);
    r->head = 0;
    r->count = 0;
    r->capacity = capacity;
    r->stopped = 0;
    r->on_space = NULL;
    r->on_space_arg = NULL;
    return 0;
}

void spead_ring_destroy(spead_ring *r, void (*free_item)(void *))
{
    if (free_item)
        for (size_t i = 0; i < r->count; i++)
            free_item(r->items[(r->head + i) % r->storage]);
    free(r->items);
    close(r->efd);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->cond);
}

static int grow(spead_ring *r)
{
    size_t storage = r->storage * 2;
    void **items = malloc(storage * sizeof(void *));
    if (!items)
        return -1;
    for (size_t i = 0; i < r->count; i++)
        items[i] = r->items[(r->head + i) % r->storage];
    free(r->items);
    r->items = items;
    r->storage = storage;
    r->head = 0;
    return 0;
}

int spead_ring_push(spead_ring *r, void *item)
{
    pthread_mutex_lock(&r->lock);
    if (r->stopped) {
        pthread_mutex_unlock(&r->lock);
        return 1;
    }
    if (r->count == r->storage && grow(r) != 0) {
        pthread_mutex_unlock(&r->lock);
        return -1;
    }
    r->items[(r->head + r->count) % r->storage] = item;
    __atomic_store_n(&r->count, r->count + 1, __ATOMIC_RELAXED);
    spead_efd_add(r->efd, 1);
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
    return 0;
}

int spead_ring_pop(spead_ring *r, void **out, int timeout_ms, int (*give_up)(void *), void *arg)
{
    struct timespec deadline;
    if (timeout_ms > 0)
        spead_deadline_after_ms(CLOCK_MONOTONIC, timeout_ms, &deadline);
    pthread_mutex_lock(&r->lock);
    for (;;) {
        if (r->count > 0) {
            *out = r->items[r->head];
            r->head = (r->head + 1) % r->storage;
            __atomic_store_n(&r->count, r->count - 1, __ATOMIC_RELAXED);
            spead_efd_take(r->efd);
            if (r->count < r->capacity && r->on_space)
                r->on_space(r->on_space_arg);
            pthread_mutex_unlock(&r->lock);
            return 1;
        }
        if (r->stopped) {
            pthread_mutex_unlock(&r->lock);
            return 0;
        }
        if (timeout_ms == 0 || (give_up && give_up(arg))) {
            pthread_mutex_unlock(&r->lock);
            return -1;
        }
        if (timeout_ms < 0) {
            pthread_cond_wait(&r->cond, &r->lock);
        } else if (pthread_cond_timedwait(&r->cond, &r->lock, &deadline) == ETIMEDOUT) {
            pthread_mutex_unlock(&r->lock);
            return -1;
        }
    }
}

void spead_ring_stop(spead_ring *r)
{
    pthread_mutex_lock(&r->lock);
    if (!r->stopped) {
        r->stopped = 1;
        spead_efd_add(r->efd, 1); /* the end marker: never taken, keeps the fd readable */
        pthread_cond_broadcast(&r->cond);
    }
    pthread_mutex_unlock(&r->lock);
}

void spead_ring_wake(spead_ring *r)
{
    pthread_mutex_lock(&r->lock);
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

int spead_ring_is_full(spead_ring *r)
{
    return __atomic_load_n(&r->count, __ATOMIC_RELAXED) >= r->capacity;
}

size_t spead_ring_size(spead_ring *r)
{
    return __atomic_load_n(&r->count, __ATOMIC_RELAXED);
}

int spead_ring_if_full(spead_ring *r, void (*fn)(void *), void *arg)
{
    int full = 0;
    pthread_mutex_lock(&r->lock);
    if (r->count >= r->capacity) {
        fn(arg);
        full = 1;
    }
    pthread_mutex_unlock(&r->lock);
    return full;
}
