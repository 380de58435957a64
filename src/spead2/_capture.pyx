# cython: language_level=3
"""Capture files for the command-line tools.

- :class:`PcapWriter` writes UDP datagrams as pcap or pcapng records, each
  framed as Ethernet / IPv4 or IPv6 / UDP (``csrc/pcap_write.c``).
- :class:`UdpDatagrams` walks the UDP datagrams of a capture in memory with
  the parser and filter of :meth:`spead2.recv.Stream.add_udp_pcap_file_reader`
  (``csrc/pcap.c``, ``csrc/pcap_filter.c``), so a filter selects exactly
  what it selects there.
- :class:`Capture` records the datagrams arriving on kernel sockets into a
  capture file, in compiled code without the GIL (``csrc/capture.c``).

The record format lives in C once, and both writers use it.
"""

import errno as _errno
import os
import socket

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

cdef extern from "pcap.h" nogil:
    enum:
        PCAP_FORMAT_CLASSIC
        PCAP_FORMAT_NG
    enum:
        PCAP_NEXT_RECORD
        PCAP_NEXT_SKIP
        PCAP_NEXT_END
        PCAP_NEXT_ERROR
    enum:
        PCAP_FRAME_UDP
        PCAP_FRAME_OTHER
        PCAP_FRAME_FRAGMENT
        PCAP_FRAME_TRUNCATED
    ctypedef struct pcap_cursor:
        size_t pos
        char error[160]
    ctypedef struct pcap_record:
        uint32_t linktype
        const uint8_t *data
        size_t caplen
        size_t origlen
        size_t offset
    ctypedef struct pcap_udp:
        int ip_version
        uint8_t src[16]
        uint8_t dst[16]
        uint16_t src_port
        uint16_t dst_port
        int n_vlans
        const uint8_t *payload
        size_t payload_len
    int pcap_cursor_init(pcap_cursor *c, const uint8_t *data, size_t len)
    void pcap_cursor_destroy(pcap_cursor *c)
    int pcap_cursor_next(pcap_cursor *c, pcap_record *rec)
    int pcap_parse_frame(uint32_t linktype, const uint8_t *frame, size_t caplen, pcap_udp *out)

cdef extern from "pcap_filter.h" nogil:
    ctypedef struct pcap_filter:
        pass
    pcap_filter *pcap_filter_compile(const char *expr, char *err, size_t err_len)
    void pcap_filter_free(pcap_filter *f)
    int pcap_filter_match(const pcap_filter *f, const pcap_udp *d)

cdef extern from "pcap_write.h" nogil:
    enum:
        PCAPW_FILE_HEADER_MAX
    size_t pcapw_max_payload(int ip_version)
    size_t pcapw_file_header(int format, uint8_t *out)
    size_t pcapw_record_size(int format, int ip_version, size_t payload_len)
    size_t pcapw_record(int format, const pcap_udp *d, uint64_t ts_ns, uint16_t ip_id,
                        uint8_t *out)

cdef extern from "capture.h" nogil:
    ctypedef struct capture:
        pass
    ctypedef struct capture_stats:
        uint64_t packets
        uint64_t bytes
        uint64_t drops
        uint64_t file_bytes
        uint64_t truncated
    enum:
        CAPTURE_PERIOD
        CAPTURE_LIMIT
        CAPTURE_SIGNAL
    capture *capture_create(const int *fds, size_t n_fds, int out_fd, int format, int gro,
                            char *err, size_t err_len)
    int capture_run(capture *c, uint64_t limit, int timeout_ms)
    int capture_flush(capture *c)
    void capture_get_stats(const capture *c, capture_stats *out)
    int capture_failed_socket(const capture *c)
    void capture_destroy(capture *c)

#: The capture formats written here.
FORMATS = ("pcap", "pcapng")
#: The largest UDP payload a frame carries, by IP version.
MAX_PAYLOAD = {4: pcapw_max_payload(4), 6: pcapw_max_payload(6)}


cdef int _format_code(str name) except -1:
    if name == "pcap":
        return PCAP_FORMAT_CLASSIC
    if name == "pcapng":
        return PCAP_FORMAT_NG
    raise ValueError(f"unknown capture format {name!r} (known: {', '.join(FORMATS)})")


cdef int _set_endpoint(pcap_udp *d, bint source, tuple endpoint) except -1:
    """Store ``(address, port)`` (a numeric IPv4 or IPv6 address) in ``d``."""
    host, port = endpoint
    host = str(host).split("%")[0]
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        packed = socket.inet_pton(family, host)
    except OSError:
        raise ValueError(f"{host!r} is not a numeric IPv4 or IPv6 address") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is not 0-65535")
    version = 6 if family == socket.AF_INET6 else 4
    if not source and d.ip_version != version:
        raise ValueError("the source and destination addresses must both be IPv4 or both IPv6")
    d.ip_version = version
    if source:
        memcpy(d.src, <const char *> packed, len(packed))
        d.src_port = port
    else:
        memcpy(d.dst, <const char *> packed, len(packed))
        d.dst_port = port
    return 0


cdef class PcapWriter:
    """Writes UDP datagrams from ``source`` to ``destination`` (each an
    ``(address, port)`` pair with a numeric address, both IPv4 or both
    IPv6) into the binary file object ``file``, as a capture of ``format``
    (``"pcap"``, classic with nanosecond timestamps, or ``"pcapng"``).

    Records are gathered in memory and handed to ``file.write`` a megabyte
    or so at a time; :meth:`close` writes the rest (it does not close
    ``file``).
    """

    cdef object _file
    cdef int _format
    cdef pcap_udp _flow
    cdef uint8_t *_buf
    cdef size_t _len
    cdef size_t _cap
    cdef uint16_t _ip_id
    cdef readonly uint64_t bytes_written
    cdef readonly uint64_t datagrams

    def __cinit__(self):
        self._cap = 1 << 20
        self._buf = <uint8_t *> malloc(self._cap)
        if self._buf == NULL:
            raise MemoryError()

    def __init__(self, file, source: tuple, destination: tuple, format: str = "pcap") -> None:
        self._format = _format_code(format)
        memset(&self._flow, 0, sizeof(self._flow))
        _set_endpoint(&self._flow, True, source)
        _set_endpoint(&self._flow, False, destination)
        self._file = file
        self._len = pcapw_file_header(self._format, self._buf)

    def __dealloc__(self):
        free(self._buf)

    @property
    def max_payload(self) -> int:
        """The largest datagram payload this writer takes (65507 bytes over
        IPv4, 65527 over IPv6)."""
        return pcapw_max_payload(self._flow.ip_version)

    def write(self, payload, timestamp_ns: int) -> None:
        """Add one datagram carrying ``payload`` (bytes-like), sent at
        ``timestamp_ns`` nanoseconds since the Unix epoch. A payload larger
        than :attr:`max_payload` is a ``ValueError``."""
        cdef Py_buffer view
        cdef size_t need
        cdef uint64_t ts = timestamp_ns
        if self._file is None:
            raise ValueError("the writer is closed")
        PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE)
        try:
            if <size_t> view.len > pcapw_max_payload(self._flow.ip_version):
                raise ValueError(f"a {view.len}-byte datagram does not fit in a UDP/IPv"
                                 f"{self._flow.ip_version} frame (at most "
                                 f"{pcapw_max_payload(self._flow.ip_version)} bytes)")
            need = pcapw_record_size(self._format, self._flow.ip_version, view.len)
            if self._cap - self._len < need:
                self._write_out()
            self._flow.payload = <const uint8_t *> view.buf
            self._flow.payload_len = view.len
            self._len += pcapw_record(self._format, &self._flow, ts, self._ip_id,
                                      self._buf + self._len)
            self._ip_id += 1
            self.datagrams += 1
        finally:
            PyBuffer_Release(&view)

    cdef _write_out(self):
        if self._len:
            data = PyBytes_FromStringAndSize(<const char *> self._buf, self._len)
            self._len = 0
            self._file.write(data)
            self.bytes_written += len(data)

    def close(self) -> None:
        """Write out what is buffered and flush ``file``."""
        if self._file is not None:
            self._write_out()
            self._file.flush()
            self._file = None


cdef class UdpDatagrams:
    """The UDP datagrams of a pcap or pcapng capture held in ``data`` (any
    bytes-like object, such as an ``mmap``), in file order, that ``filter``
    selects: an iterator of ``(offset, length)``, where the payload is
    ``data[offset:offset + length]``.

    Frames are parsed, and ``filter`` compiled and matched, by the code of
    :meth:`spead2.recv.Stream.add_udp_pcap_file_reader`, so both take the
    same datagrams. A file that is not a capture is a ``ValueError``, a
    filter that is not understood a :exc:`spead2.FilterError`. IP fragments
    and records cut short are skipped and counted (:attr:`fragments`,
    :attr:`truncated`, :attr:`unusable`); if the file cannot be read to its
    end, :attr:`error` says why once the iteration stops.
    """

    cdef Py_buffer _view
    cdef bint _have_view
    cdef pcap_cursor _cursor
    cdef bint _have_cursor
    cdef pcap_filter *_filter
    cdef readonly uint64_t fragments
    cdef readonly uint64_t truncated
    cdef readonly uint64_t unusable
    cdef readonly object error

    def __cinit__(self, data, filter: str = ""):
        cdef char err[512]
        cdef bytes expr
        from spead2._errors import FilterError
        if not isinstance(filter, str):
            raise TypeError(f"filter must be a str, not {type(filter).__name__}")
        if "\0" in filter:
            raise FilterError("the filter contains a NUL character")
        PyObject_GetBuffer(data, &self._view, PyBUF_SIMPLE)
        self._have_view = True
        if pcap_cursor_init(&self._cursor, <const uint8_t *> self._view.buf,
                            self._view.len) != 0:
            message = (<char *> self._cursor.error).decode("utf-8", "replace")
            self.close()
            raise ValueError(message)
        self._have_cursor = True
        if filter:
            expr = filter.encode()
            self._filter = pcap_filter_compile(expr, err, sizeof(err))
            if self._filter == NULL:
                self.close()
                raise FilterError(f"bad filter {filter!r}: {err.decode('utf-8', 'replace')}")

    def __dealloc__(self):
        self.close()

    def close(self) -> None:
        """Let go of ``data`` (an ``mmap`` cannot be closed before)."""
        if self._filter != NULL:
            pcap_filter_free(self._filter)
            self._filter = NULL
        if self._have_cursor:
            pcap_cursor_destroy(&self._cursor)
            self._have_cursor = False
        if self._have_view:
            PyBuffer_Release(&self._view)
            self._have_view = False

    def __iter__(self):
        return self

    def __next__(self):
        cdef pcap_record rec
        cdef pcap_udp d
        cdef int st
        cdef const uint8_t *base
        if not self._have_cursor:
            raise StopIteration
        base = <const uint8_t *> self._view.buf
        while True:
            st = pcap_cursor_next(&self._cursor, &rec)
            if st == PCAP_NEXT_END:
                raise StopIteration
            if st == PCAP_NEXT_ERROR:
                self.error = (<char *> self._cursor.error).decode("utf-8", "replace")
                raise StopIteration
            if st == PCAP_NEXT_SKIP:
                self.unusable += 1
                continue
            st = pcap_parse_frame(rec.linktype, rec.data, rec.caplen, &d)
            if st == PCAP_FRAME_FRAGMENT:
                self.fragments += 1
                continue
            if st == PCAP_FRAME_TRUNCATED:
                self.truncated += 1
                continue
            if st != PCAP_FRAME_UDP:
                continue
            if self._filter != NULL and not pcap_filter_match(self._filter, &d):
                continue
            return d.payload - base, d.payload_len


cdef class Capture:
    """Records every datagram arriving on ``sockets`` (bound UDP sockets,
    kept open by the caller) into the file open for writing at file
    descriptor ``fd``, as ``format`` (``"pcap"`` or ``"pcapng"``), with the
    kernel's receive timestamps. ``gro``: take coalesced datagrams from the
    kernel where it offers them (they are split again, one record each).
    A socket the capture cannot use is a ``ValueError``.
    """

    cdef capture *_c
    cdef object _sockets
    cdef readonly object fd

    def __cinit__(self, sockets, int fd, str format="pcap", bint gro=True):
        cdef char err[256]
        cdef int *fds
        cdef size_t i, n
        cdef int code = _format_code(format)
        self._sockets = list(sockets)
        n = len(self._sockets)
        fds = <int *> malloc((n if n else 1) * sizeof(int))
        if fds == NULL:
            raise MemoryError()
        try:
            for i in range(n):
                fds[i] = self._sockets[i].fileno()
            self._c = capture_create(fds, n, fd, code, gro, err, sizeof(err))
        finally:
            free(fds)
        if self._c == NULL:
            raise ValueError(err.decode("utf-8", "replace"))
        self.fd = fd

    def __dealloc__(self):
        if self._c != NULL:
            capture_destroy(self._c)

    cdef capture *_get(self) except NULL:
        if self._c == NULL:
            raise ValueError("the capture is closed")
        return self._c

    def _raise(self, int rc):
        exc = OSError(-rc, os.strerror(-rc))
        # which socket failed (an index into ``sockets``), or -1 for the file
        exc.socket_index = capture_failed_socket(self._c)
        raise exc

    def run(self, limit: int = 0, timeout: float = 0.1) -> str:
        """Receive and record for at most ``timeout`` seconds, without the
        GIL; returns ``"limit"`` once ``limit`` datagrams have been recorded
        in all (0: no limit), ``"signal"`` if a signal interrupted a wait
        (the caller's signal handlers run on return), else ``"period"``.
        A failure to receive or to write is an ``OSError`` whose
        ``socket_index`` says which socket failed (-1: the file)."""
        cdef capture *c = self._get()
        cdef uint64_t c_limit = limit
        cdef int c_timeout = max(0, int(timeout * 1000))
        cdef int rc
        with nogil:
            rc = capture_run(c, c_limit, c_timeout)
        if rc < 0:
            self._raise(rc)
        return {CAPTURE_PERIOD: "period", CAPTURE_LIMIT: "limit", CAPTURE_SIGNAL: "signal"}[rc]

    def flush(self) -> None:
        """Write out every record gathered so far (``OSError`` on failure)."""
        cdef capture *c = self._get()
        cdef int rc
        with nogil:
            rc = capture_flush(c)
        if rc < 0:
            self._raise(rc)

    @property
    def stats(self) -> dict:
        """``packets`` and ``bytes`` (UDP payload) recorded, ``drops`` (the
        sockets' drop counters, as the kernel last reported them with a
        datagram), ``file_bytes`` written and ``truncated`` datagrams."""
        cdef capture_stats st
        capture_get_stats(self._get(), &st)
        return {"packets": st.packets, "bytes": st.bytes, "drops": st.drops,
                "file_bytes": st.file_bytes, "truncated": st.truncated}

    def close(self) -> None:
        """Release the capture (unflushed records are lost: flush first).
        Neither the sockets nor ``fd`` are closed."""
        if self._c != NULL:
            capture_destroy(self._c)
            self._c = NULL
