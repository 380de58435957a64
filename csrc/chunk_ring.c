#include "chunk_ring.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "deadline.h"
#include "efd.h"

spead_chunk_ring *spead_chunk_ring_new(size_t capacity)
{
    if (capacity == 0 || capacity > SIZE_MAX / sizeof(spead_chunk *))
        return NULL;
    spead_chunk_ring *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->items = calloc(capacity, sizeof(spead_chunk *));
    r->data_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    r->space_fd = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!r->items || r->data_fd < 0 || r->space_fd < 0) {
        if (r->data_fd >= 0)
            close(r->data_fd);
        if (r->space_fd >= 0)
            close(r->space_fd);
        free(r->items);
        free(r);
        return NULL;
    }
    r->capacity = capacity;
    r->refs = 1;
    pthread_mutex_init(&r->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cond, &ca);
    pthread_condattr_destroy(&ca);
    return r;
}

void spead_chunk_ring_incref(spead_chunk_ring *r)
{
    __atomic_add_fetch(&r->refs, 1, __ATOMIC_RELAXED);
}

void spead_chunk_ring_decref(spead_chunk_ring *r)
{
    if (__atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    close(r->data_fd);
    close(r->space_fd);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->cond);
    free(r->items);
    free(r);
}

/* Wait on the condition until ``deadline`` (NULL: without limit). Returns
 * nonzero on timeout. */
static int wait_until(spead_chunk_ring *r, const struct timespec *deadline)
{
    if (!deadline) {
        pthread_cond_wait(&r->cond, &r->lock);
        return 0;
    }
    return pthread_cond_timedwait(&r->cond, &r->lock, deadline) == ETIMEDOUT;
}

static const struct timespec *deadline_for(int timeout_ms, struct timespec *ts)
{
    if (timeout_ms < 0)
        return NULL;
    spead_deadline_after_ms(CLOCK_MONOTONIC, timeout_ms, ts);
    return ts;
}

int spead_chunk_ring_put(spead_chunk_ring *r, spead_chunk *c, int timeout_ms)
{
    struct timespec ts;
    const struct timespec *deadline = deadline_for(timeout_ms, &ts);
    pthread_mutex_lock(&r->lock);
    for (;;) {
        if (r->stopped) {
            pthread_mutex_unlock(&r->lock);
            return 1;
        }
        if (r->count < r->capacity)
            break;
        if (timeout_ms == 0 || wait_until(r, deadline)) {
            pthread_mutex_unlock(&r->lock);
            return -1;
        }
    }
    r->items[(r->head + r->count) % r->capacity] = c;
    if (r->count++ == 0)
        spead_efd_add(r->data_fd, 1);
    if (r->count == r->capacity)
        spead_efd_take(r->space_fd);
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    return 0;
}

int spead_chunk_ring_get(spead_chunk_ring *r, spead_chunk **out, int timeout_ms)
{
    struct timespec ts;
    const struct timespec *deadline = deadline_for(timeout_ms, &ts);
    pthread_mutex_lock(&r->lock);
    for (;;) {
        if (r->count > 0)
            break;
        if (r->stopped) {
            pthread_mutex_unlock(&r->lock);
            return 0;
        }
        if (timeout_ms == 0 || wait_until(r, deadline)) {
            pthread_mutex_unlock(&r->lock);
            return -1;
        }
    }
    *out = r->items[r->head];
    r->head = (r->head + 1) % r->capacity;
    if (r->count-- == r->capacity && !r->stopped)
        spead_efd_add(r->space_fd, 1);
    if (r->count == 0 && !r->stopped)
        spead_efd_take(r->data_fd);
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    return 1;
}

static int stop_locked(spead_chunk_ring *r)
{
    if (r->stopped)
        return 0;
    r->stopped = 1;
    /* both descriptors stay readable from now on */
    if (r->count == 0)
        spead_efd_add(r->data_fd, 1);
    if (r->count == r->capacity)
        spead_efd_add(r->space_fd, 1);
    pthread_cond_broadcast(&r->cond);
    return 1;
}

int spead_chunk_ring_stop(spead_chunk_ring *r)
{
    pthread_mutex_lock(&r->lock);
    int stopped = stop_locked(r);
    pthread_mutex_unlock(&r->lock);
    return stopped;
}

void spead_chunk_ring_add_producer(spead_chunk_ring *r)
{
    pthread_mutex_lock(&r->lock);
    r->producers++;
    pthread_mutex_unlock(&r->lock);
}

int spead_chunk_ring_remove_producer(spead_chunk_ring *r)
{
    pthread_mutex_lock(&r->lock);
    int stopped = 0;
    if (r->producers > 0 && --r->producers == 0)
        stopped = stop_locked(r);
    pthread_mutex_unlock(&r->lock);
    return stopped;
}

size_t spead_chunk_ring_size(spead_chunk_ring *r)
{
    pthread_mutex_lock(&r->lock);
    size_t n = r->count;
    pthread_mutex_unlock(&r->lock);
    return n;
}

int spead_chunk_ring_is_stopped(spead_chunk_ring *r)
{
    pthread_mutex_lock(&r->lock);
    int s = r->stopped;
    pthread_mutex_unlock(&r->lock);
    return s;
}
