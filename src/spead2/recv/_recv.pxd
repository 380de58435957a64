# The receive stream's common base, for the modules that derive from it
# (spead2.recv._chunks).
from spead2._core cimport ThreadPool
from spead2._recv_core cimport recv_stream, recv_stream_config


cdef class _LogSource:
    pass


cdef class _StreamBase:
    cdef recv_stream *s
    cdef readonly object thread_pool
    cdef list _holds
    cdef object _config
    cdef list _stat_list
    cdef bint _started
    cdef _LogSource _warnings

    cdef int _create(self, ThreadPool thread_pool, config, recv_stream_config *c,
                     list extra_stats) except -1
    cdef recv_stream *_get(self) except NULL
    cdef bint _may_add_reader(self) except -1
    cdef void _reader_refused(self, what)
    cdef void _drain_logs(self)
