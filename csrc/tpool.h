/* Worker thread pool driving all socket I/O.
 *
 * Each worker runs an epoll loop.  Work arrives either as posted tasks or as
 * one-shot file-descriptor watches.  No Python object is ever touched here, so
 * workers never need the GIL.
 */
#ifndef SPEAD2_TPOOL_H
#define SPEAD2_TPOOL_H

#include <stdint.h>
#include <stddef.h>
#include <pthread.h>

typedef struct tpool tpool_t;

/* Watch callback: return non-zero to re-arm the watch, zero to leave it idle
 * (until tpool_rearm is called). */
typedef int (*tpool_watch_fn)(void *arg);
/* Called when the pool can no longer watch the fd: re-arming it failed with
 * errno ``err`` (for instance the fd number now names another file).  The
 * watch is then dead: it will not fire again and tpool_rearm ignores it,
 * but it must still be removed with tpool_unwatch (which may be called from
 * here).  Called at most once per watch, without pool locks held, on a
 * worker or on the thread calling tpool_rearm. */
typedef void (*tpool_fail_fn)(void *arg, int err);
typedef void (*tpool_task_fn)(void *arg);
/* Called exactly once when the pool lets go of ``arg`` (task done or dropped,
 * watch removed). May be NULL. */
typedef void (*tpool_release_fn)(void *arg);

tpool_t *tpool_create(int nthreads, const int *affinity, int n_affinity,
                      char *err, size_t errlen);
void tpool_incref(tpool_t *tp);
/* Dropping the last reference stops the pool.  Any thread may do it, a
 * worker of this pool included (from a task or a watch callback): the memory
 * is freed only once every worker has left its loop. */
void tpool_decref(tpool_t *tp);
/* Stop and join the workers. Queued tasks are released without running.
 * Idempotent. */
void tpool_stop(tpool_t *tp);
int tpool_num_threads(const tpool_t *tp);
int tpool_is_stopped(tpool_t *tp);
/* Returns 0, or -1 if the pool is stopped (release is then called at once). */
int tpool_post(tpool_t *tp, tpool_task_fn fn, void *arg, tpool_release_fn release);
/* Start watching fd for ``events`` (EPOLLIN...); ``fail`` may be NULL.
 * Returns a handle >= 0 or -1 (errno set; release is then NOT called). */
int64_t tpool_watch(tpool_t *tp, int fd, uint32_t events, tpool_watch_fn fn,
                    tpool_fail_fn fail, void *arg, tpool_release_fn release);
void tpool_rearm(tpool_t *tp, int64_t handle);
/* After return, the callback is not running on another thread and will not
 * run again; release is called (possibly later, by the thread running the
 * callback if called from inside it). The fd may then be closed. */
void tpool_unwatch(tpool_t *tp, int64_t handle);
/* Stop hooks let objects served by the pool learn that it has stopped.
 * When tpool_stop has joined the workers it calls ``hold(arg)`` for each
 * hook under the hook lock, and right after each that returned non-zero
 * ``fire(arg)``, without any pool lock held.  ``fire`` must undo what a
 * successful ``hold`` did.  Returns a handle, or NULL when out of memory. */
typedef int (*tpool_hold_fn)(void *arg);
void *tpool_add_stop_hook(tpool_t *tp, tpool_hold_fn hold, tpool_task_fn fire, void *arg);
/* After return, ``hold`` for this hook is not running and will not run. */
void tpool_remove_stop_hook(tpool_t *tp, void *handle);
/* True when called from one of this pool's workers. */
int tpool_in_worker(tpool_t *tp);

#endif
