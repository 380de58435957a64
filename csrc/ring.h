/* A queue of pointers between producer threads and a consumer, with a
 * nominal capacity, a stopped state, and an eventfd for event loops.
 *
 * Pushing never blocks and never fails for lack of room: the storage grows
 * past the capacity when it must (a single packet can finish several heaps),
 * and producers are expected to stop producing while spead_ring_full() says
 * so. Popping can wait, with a timeout. Once stopped, nothing more is
 * accepted, and consumers get what is queued, then "stopped". */
#ifndef SPEAD2_RING_H
#define SPEAD2_RING_H

#include <pthread.h>
#include <stddef.h>

typedef struct spead_ring {
    pthread_mutex_t lock;
    pthread_cond_t cond;         /* an item arrived, the ring stopped, or a wake-up */
    void **items;
    size_t storage;              /* slots in ``items`` */
    size_t head;
    size_t count;                /* read without the lock only as a hint */
    size_t capacity;
    int stopped;
    int efd;                     /* eventfd (semaphore): readable iff an item is queued or stopped */
    /* Called with the lock held whenever a pop leaves the ring below capacity. */
    void (*on_space)(void *arg);
    void *on_space_arg;
} spead_ring;

/* Returns 0, or -1 (errno set) when resources are lacking. */
int spead_ring_init(spead_ring *r, size_t capacity);
/* Frees the queued items with ``free_item`` (may be NULL). */
void spead_ring_destroy(spead_ring *r, void (*free_item)(void *));
/* Queue ``item``. Returns 0, 1 if the ring is stopped, -1 when out of
 * memory; in both failures the caller keeps the item. */
int spead_ring_push(spead_ring *r, void *item);
/* Take the oldest item. ``timeout_ms`` < 0 waits without limit, 0 does not
 * wait. Before each wait ``give_up(arg)`` (if not NULL) is asked, under the
 * lock, whether to return early. Returns 1 with *out set, 0 when stopped and
 * empty, -1 on timeout or give-up. */
int spead_ring_pop(spead_ring *r, void **out, int timeout_ms, int (*give_up)(void *), void *arg);
void spead_ring_stop(spead_ring *r);
/* Wake waiting consumers so they ask give_up again. */
void spead_ring_wake(spead_ring *r);
int spead_ring_is_full(spead_ring *r);
size_t spead_ring_size(spead_ring *r);
/* Under the lock: if the ring is full, call ``fn(arg)`` and return 1. */
int spead_ring_if_full(spead_ring *r, void (*fn)(void *), void *arg);

#endif
