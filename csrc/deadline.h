/* Absolute deadlines for timed waits on condition variables. */
#ifndef SPEAD2_DEADLINE_H
#define SPEAD2_DEADLINE_H

#include <time.h>

/* ``ms`` (>= 0) milliseconds from now on ``clock``, the clock of the
 * condition variable to be waited on. */
static inline void spead_deadline_after_ms(clockid_t clock, int ms, struct timespec *ts)
{
    clock_gettime(clock, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long) (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

#endif
