/* A queue of packets between threads of one process (spead2.InprocQueue):
 * unbounded, first in first out, each packet copied in. Senders add
 * packets; receivers take them, learning of new ones through an eventfd
 * that stays readable while packets wait or once the queue is stopped. */
#ifndef SPEAD2_INPROC_H
#define SPEAD2_INPROC_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

typedef struct spead_inproc_packet {
    struct spead_inproc_packet *next;
    size_t size;
    uint8_t data[];
} spead_inproc_packet;

typedef struct spead_inproc_queue {
    int refs;
    pthread_mutex_t lock;
    spead_inproc_packet *head, *tail;
    size_t count;
    int stopped;
    int efd;
} spead_inproc_queue;

/* NULL when out of resources. */
spead_inproc_queue *spead_inproc_queue_new(void);
void spead_inproc_queue_incref(spead_inproc_queue *q);
void spead_inproc_queue_decref(spead_inproc_queue *q);
/* Copy in one packet. Returns 0, 1 if the queue is stopped, -1 when out of
 * memory. */
int spead_inproc_queue_add(spead_inproc_queue *q, const uint8_t *data, size_t size);
/* No more packets will come: receivers drain the queue, then stop. */
void spead_inproc_queue_stop(spead_inproc_queue *q);
/* Take the oldest packet (free it with free()), or NULL; *ended is set
 * when the queue is stopped and empty. */
spead_inproc_packet *spead_inproc_queue_pop(spead_inproc_queue *q, int *ended);
/* The eventfd: readable while packets wait or the queue is stopped. Do not
 * read it; dup it to watch it from several places. */
int spead_inproc_queue_fd(spead_inproc_queue *q);
size_t spead_inproc_queue_size(spead_inproc_queue *q);

#endif
