#include "logq.h"

#include <stdio.h>

void spead_logq_init(spead_logq *q)
{
    pthread_mutex_init(&q->lock, NULL);
    q->head = 0;
    q->count = 0;
    q->dropped = 0;
    q->min_level = SPEAD_LOG_INFO;
}

void spead_logq_destroy(spead_logq *q)
{
    pthread_mutex_destroy(&q->lock);
}

int spead_logq_vpush(spead_logq *q, int level, const char *fmt, va_list ap)
{
    if (level < __atomic_load_n(&q->min_level, __ATOMIC_RELAXED))
        return 0;
    pthread_mutex_lock(&q->lock);
    if (q->count == SPEAD_LOG_QUEUE) {
        q->dropped++;
        pthread_mutex_unlock(&q->lock);
        return 0;
    }
    spead_log_entry *e = &q->entries[(q->head + q->count) % SPEAD_LOG_QUEUE];
    e->level = level;
    vsnprintf(e->text, sizeof(e->text), fmt, ap);
    __atomic_store_n(&q->count, q->count + 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&q->lock);
    return 1;
}

int spead_logq_push(spead_logq *q, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = spead_logq_vpush(q, level, fmt, ap);
    va_end(ap);
    return r;
}

int spead_logq_pending(spead_logq *q)
{
    return __atomic_load_n(&q->count, __ATOMIC_ACQUIRE) != 0;
}

size_t spead_logq_take(spead_logq *q, spead_log_entry *out, size_t max)
{
    if (!spead_logq_pending(q))
        return 0;
    pthread_mutex_lock(&q->lock);
    size_t n = 0;
    while (n < max && q->count > 0) {
        out[n++] = q->entries[q->head];
        q->head = (q->head + 1) % SPEAD_LOG_QUEUE;
        __atomic_store_n(&q->count, q->count - 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&q->lock);
    return n;
}

uint64_t spead_logq_dropped(spead_logq *q)
{
    pthread_mutex_lock(&q->lock);
    uint64_t d = q->dropped;
    pthread_mutex_unlock(&q->lock);
    return d;
}

void spead_logq_set_min_level(spead_logq *q, int level)
{
    __atomic_store_n(&q->min_level, level, __ATOMIC_RELAXED);
}

static __thread spead_logq *current_queue;

void spead_logq_set_current(spead_logq *q)
{
    current_queue = q;
}

spead_logq *spead_logq_current(void)
{
    return current_queue;
}
