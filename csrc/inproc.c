#include "inproc.h"

#include "efd.h"

#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

spead_inproc_queue *spead_inproc_queue_new(void)
{
    spead_inproc_queue *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (q->efd < 0) {
        free(q);
        return NULL;
    }
    pthread_mutex_init(&q->lock, NULL);
    q->refs = 1;
    return q;
}

void spead_inproc_queue_incref(spead_inproc_queue *q)
{
    __atomic_add_fetch(&q->refs, 1, __ATOMIC_RELAXED);
}

void spead_inproc_queue_decref(spead_inproc_queue *q)
{
    if (__atomic_sub_fetch(&q->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    spead_inproc_packet *p = q->head;
    while (p) {
        spead_inproc_packet *next = p->next;
        free(p);
        p = next;
    }
    close(q->efd);
    pthread_mutex_destroy(&q->lock);
    free(q);
}

int spead_inproc_queue_add(spead_inproc_queue *q, const uint8_t *data, size_t size)
{
    if (size > SIZE_MAX - sizeof(spead_inproc_packet))
        return -1;
    spead_inproc_packet *p = malloc(sizeof(*p) + size);
    if (!p)
        return -1;
    p->next = NULL;
    p->size = size;
    memcpy(p->data, data, size);
    pthread_mutex_lock(&q->lock);
    if (q->stopped) {
        pthread_mutex_unlock(&q->lock);
        free(p);
        return 1;
    }
    if (q->tail)
        q->tail->next = p;
    else
        q->head = p;
    q->tail = p;
    if (q->count++ == 0)
        spead_efd_add(q->efd, 1);
    pthread_mutex_unlock(&q->lock);
    return 0;
}

void spead_inproc_queue_stop(spead_inproc_queue *q)
{
    pthread_mutex_lock(&q->lock);
    if (!q->stopped) {
        q->stopped = 1;
        if (q->count == 0)
            spead_efd_add(q->efd, 1);
    }
    pthread_mutex_unlock(&q->lock);
}

spead_inproc_packet *spead_inproc_queue_pop(spead_inproc_queue *q, int *ended)
{
    pthread_mutex_lock(&q->lock);
    spead_inproc_packet *p = q->head;
    if (p) {
        q->head = p->next;
        if (!q->head)
            q->tail = NULL;
        /* the fd stays readable while packets wait, and for ever once the
         * queue has stopped */
        if (--q->count == 0 && !q->stopped)
            spead_efd_take(q->efd);
    }
    *ended = !p && q->stopped;
    pthread_mutex_unlock(&q->lock);
    return p;
}

int spead_inproc_queue_fd(spead_inproc_queue *q)
{
    return q->efd;
}

size_t spead_inproc_queue_size(spead_inproc_queue *q)
{
    pthread_mutex_lock(&q->lock);
    size_t n = q->count;
    pthread_mutex_unlock(&q->lock);
    return n;
}
