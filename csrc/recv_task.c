#include "recv_task.h"

static void release_stream(void *arg)
{
    recv_stream_decref(((spead_reader *) arg)->stream);
}

static void run_task(void *arg)
{
    spead_reader *r = arg;
    if (recv_stream_run_batch(r->stream, r, RECV_TASK_BATCH) == RECV_BATCH_MORE)
        task_reader_start(r);
}

void task_reader_start(spead_reader *base)
{
    recv_stream_incref(base->stream);
    tpool_post(base->stream->tp, run_task, base, release_stream);
}

void task_reader_close(spead_reader *base)
{
    recv_stream *s = base->stream;
    pthread_mutex_lock(&s->lock);
    base->closed = 1;
    pthread_mutex_unlock(&s->lock);
}
