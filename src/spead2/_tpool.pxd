# Typed interface to csrc/tpool.h: the worker thread pool.
from libc.stdint cimport int64_t, uint32_t

cdef extern from "tpool.h" nogil:
    ctypedef struct tpool_t:
        pass
    ctypedef int (*tpool_watch_fn)(void *arg)
    ctypedef void (*tpool_fail_fn)(void *arg, int err)
    ctypedef void (*tpool_task_fn)(void *arg)
    ctypedef void (*tpool_release_fn)(void *arg)
    tpool_t *tpool_create(int nthreads, const int *affinity, int n_affinity, char *err, size_t errlen)
    void tpool_incref(tpool_t *tp)
    void tpool_decref(tpool_t *tp)
    void tpool_stop(tpool_t *tp)
    int tpool_num_threads(const tpool_t *tp)
    int tpool_is_stopped(tpool_t *tp)
    int tpool_post(tpool_t *tp, tpool_task_fn fn, void *arg, tpool_release_fn release)
    int64_t tpool_watch(tpool_t *tp, int fd, uint32_t events, tpool_watch_fn fn, tpool_fail_fn fail,
                        void *arg, tpool_release_fn release)
    void tpool_rearm(tpool_t *tp, int64_t handle)
    void tpool_unwatch(tpool_t *tp, int64_t handle)
