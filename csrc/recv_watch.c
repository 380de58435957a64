#include "recv_watch.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

void watched_reader_init(spead_watched_reader *r, const spead_reader_ops *ops, int fd,
                         int (*process)(spead_watched_reader *r), const char *what)
{
    r->base.ops = ops;
    r->fd = fd;
    r->watch = -1;
    r->busy = 0;
    r->process = process;
    r->what = what;
}

int watched_reader_enter(spead_watched_reader *r)
{
    recv_stream *s = r->base.stream;
    pthread_mutex_lock(&s->lock);
    int open = !r->base.closed;
    if (open) {
        r->busy = 1;
        r->busy_thread = pthread_self();
    }
    pthread_mutex_unlock(&s->lock);
    return open;
}

void watched_reader_leave(spead_watched_reader *r)
{
    recv_stream *s = r->base.stream;
    pthread_mutex_lock(&s->lock);
    r->busy = 0;
    if (r->base.closed)
        pthread_cond_broadcast(&s->idle_cond);
    pthread_mutex_unlock(&s->lock);
}

static void release_stream(void *arg)
{
    recv_stream_decref(((spead_watched_reader *) arg)->base.stream);
}

static int on_ready(void *arg)
{
    spead_watched_reader *r = arg;
    return r->process(r);
}

static void resume_task(void *arg)
{
    spead_watched_reader *r = arg;
    recv_stream *s = r->base.stream;
    if (!r->process(r))
        return;
    pthread_mutex_lock(&s->lock);
    int64_t watch = r->base.closed ? -1 : r->watch;
    pthread_mutex_unlock(&s->lock);
    if (watch >= 0)
        tpool_rearm(s->tp, watch);
}

void watched_reader_resume(spead_reader *base)
{
    recv_stream_incref(base->stream);
    tpool_post(base->stream->tp, resume_task, base, release_stream);
}

/* The pool can no longer watch the descriptor, so nothing would ever read
 * it again: end the stream rather than let its consumer wait for ever. The
 * watch holds a stream reference until it is released, after this returns. */
static void on_watch_failed(void *arg, int err)
{
    spead_watched_reader *r = arg;
    recv_stream *s = r->base.stream;
    recv_stream_log(s, SPEAD_LOG_WARNING, "reader stopped: cannot watch its %s any more: %s",
                    r->what, strerror(err));
    recv_stream_stop(s);
}

void watched_reader_start(spead_reader *base)
{
    spead_watched_reader *r = (spead_watched_reader *) base;
    recv_stream *s = base->stream;
    /* hold the lock so that fast first input cannot race the store of the
     * watch handle */
    pthread_mutex_lock(&s->lock);
    if (base->closed) {
        pthread_mutex_unlock(&s->lock);
        return;
    }
    recv_stream_incref(s);
    int64_t h = tpool_watch(s->tp, r->fd, EPOLLIN, on_ready, on_watch_failed, r,
                            release_stream);
    if (h < 0) {
        int e = errno;
        pthread_mutex_unlock(&s->lock);
        recv_stream_log(s, SPEAD_LOG_WARNING, "cannot watch the %s: %s", r->what, strerror(e));
        recv_stream_decref(s);
        return;
    }
    r->watch = h;
    pthread_mutex_unlock(&s->lock);
}

void watched_reader_close(spead_reader *base)
{
    spead_watched_reader *r = (spead_watched_reader *) base;
    recv_stream *s = base->stream;
    pthread_mutex_lock(&s->lock);
    base->closed = 1;
    while (r->busy && !pthread_equal(r->busy_thread, pthread_self()))
        pthread_cond_wait(&s->idle_cond, &s->lock);
    int64_t watch = r->watch;
    r->watch = -1;
    int fd = r->fd;
    r->fd = -1;
    pthread_mutex_unlock(&s->lock);
    if (watch >= 0)
        tpool_unwatch(s->tp, watch);
    if (fd >= 0)
        close(fd);
}
