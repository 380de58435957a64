# Typed interface to csrc/inproc.h: the in-process packet queue.
from libc.stdint cimport uint8_t

cdef extern from "inproc.h" nogil:
    ctypedef struct spead_inproc_packet:
        spead_inproc_packet *next
        size_t size
        uint8_t data[1]

    ctypedef struct spead_inproc_queue:
        pass

    spead_inproc_queue *spead_inproc_queue_new()
    void spead_inproc_queue_incref(spead_inproc_queue *q)
    void spead_inproc_queue_decref(spead_inproc_queue *q)
    int spead_inproc_queue_add(spead_inproc_queue *q, const uint8_t *data, size_t size)
    void spead_inproc_queue_stop(spead_inproc_queue *q)
    spead_inproc_packet *spead_inproc_queue_pop(spead_inproc_queue *q, int *ended)
    int spead_inproc_queue_fd(spead_inproc_queue *q)
    size_t spead_inproc_queue_size(spead_inproc_queue *q)
