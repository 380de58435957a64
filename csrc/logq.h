/* A bounded queue of log lines written by worker threads (which never take
 * the GIL) and emitted by the consumer's thread through Python logging.
 * When it is full, further lines are counted and dropped. */
#ifndef SPEAD2_LOGQ_H
#define SPEAD2_LOGQ_H

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define SPEAD_LOG_QUEUE 64
#define SPEAD_LOG_LEN 200

/* Python logging levels */
#define SPEAD_LOG_DEBUG 10
#define SPEAD_LOG_INFO 20
#define SPEAD_LOG_WARNING 30

typedef struct {
    int level;
    char text[SPEAD_LOG_LEN];
} spead_log_entry;

typedef struct {
    pthread_mutex_t lock;
    spead_log_entry entries[SPEAD_LOG_QUEUE];
    size_t head;
    size_t count;                /* read without the lock only as a hint */
    uint64_t dropped;
    int min_level;               /* lines below this level are not queued */
} spead_logq;

void spead_logq_init(spead_logq *q);
void spead_logq_destroy(spead_logq *q);
/* Queue a line; returns 1 if queued, 0 if below min_level or dropped. */
int spead_logq_push(spead_logq *q, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int spead_logq_vpush(spead_logq *q, int level, const char *fmt, va_list ap);
/* Whether lines are waiting (a hint, without locking). */
int spead_logq_pending(spead_logq *q);
/* Copy out up to ``max`` lines, oldest first; returns the count. */
size_t spead_logq_take(spead_logq *q, spead_log_entry *out, size_t max);
uint64_t spead_logq_dropped(spead_logq *q);
void spead_logq_set_min_level(spead_logq *q, int level);
/* The queue of the stream the calling thread is working for (NULL when
 * none): code below the stream, such as an allocator, logs through it. */
void spead_logq_set_current(spead_logq *q);
spead_logq *spead_logq_current(void);

#endif
