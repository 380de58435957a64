# cython: language_level=3
"""Descriptor packets and the bit-level value codec.

A descriptor travels as a complete one-packet SPEAD heap; this module turns
such packets into :class:`RawDescriptor` objects and back. It also packs and
unpacks values whose format has no numpy equivalent (fields such as ``u48``,
``i12`` or ``b1``): most significant bit first, fields in order, elements
back to back, the whole value padded with zero bits to a byte.
"""

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

import operator

# A Python int, so that shifts by it are unbounded rather than C shifts.
cdef object _ONE = 1

from spead2._wire cimport (
    SPEAD_PACKET_OK, spead_packet, spead_load_be64, spead_pointer_immediate, spead_pointer_id,
    spead_pointer_address, spead_make_pointer, spead_write_header, spead_decode_packet,
    spead_store_be64, spead_item_extent, spead_item_extents,
    spead_packet_status_string,
    SPEAD_HEAP_CNT_ID as HEAP_CNT_ID, SPEAD_HEAP_LENGTH_ID as HEAP_LENGTH_ID,
    SPEAD_PAYLOAD_OFFSET_ID as PAYLOAD_OFFSET_ID, SPEAD_PAYLOAD_LENGTH_ID as PAYLOAD_LENGTH_ID,
    SPEAD_DESCRIPTOR_NAME_ID as DESCRIPTOR_NAME_ID,
    SPEAD_DESCRIPTOR_DESCRIPTION_ID as DESCRIPTOR_DESCRIPTION_ID,
    SPEAD_DESCRIPTOR_SHAPE_ID as DESCRIPTOR_SHAPE_ID,
    SPEAD_DESCRIPTOR_FORMAT_ID as DESCRIPTOR_FORMAT_ID, SPEAD_DESCRIPTOR_ID_ID as DESCRIPTOR_ID_ID,
    SPEAD_DESCRIPTOR_DTYPE_ID as DESCRIPTOR_DTYPE_ID,
    SPEAD_BUG_COMPAT_DESCRIPTOR_WIDTHS as BUG_COMPAT_DESCRIPTOR_WIDTHS,
    SPEAD_BUG_COMPAT_SHAPE_BIT_1 as BUG_COMPAT_SHAPE_BIT_1)

# Under BUG_COMPAT_DESCRIPTOR_WIDTHS, PySPEAD 0.5.2 sized a format entry as
# for SPEAD-64-40 (1 code byte + 3 length bytes) and a shape entry as a
# 64-bit word (1 flag byte + 7 size bytes), whatever the flavour.
cdef enum:
    BUGGY_FORMAT_ENTRY = 4
    BUGGY_SHAPE_ENTRY = 8


cdef class RawDescriptor:
    """The fields of a descriptor as they travel on the wire.

    ``shape`` holds ints with -1 for a variable dimension; ``format`` holds
    ``(code, bits)`` pairs; ``numpy_header`` is the ``.npy`` header text
    (empty for a format-described item).
    """

    cdef public object id
    cdef public object name
    cdef public object description
    cdef public object shape
    cdef public object format
    cdef public object numpy_header

    def __init__(self, id: int = 0, name: bytes = b"", description: bytes = b"",
                 shape=(), format=(), numpy_header: bytes = b""):
        self.id = id
        self.name = name
        self.description = description
        self.shape = list(shape)
        self.format = list(format)
        self.numpy_header = numpy_header

    def __eq__(self, other):
        if not isinstance(other, RawDescriptor):
            return NotImplemented
        return self._key() == (<RawDescriptor> other)._key()

    def __hash__(self):
        return hash((self.id, self.name, self.description, tuple(self.shape),
                     tuple(tuple(f) for f in self.format), self.numpy_header))

    def _key(self):
        return (self.id, self.name, self.description, list(self.shape),
                [tuple(f) for f in self.format], self.numpy_header)

    def __repr__(self):
        return (f"RawDescriptor(id={self.id!r}, name={self.name!r}, "
                f"description={self.description!r}, shape={self.shape!r}, "
                f"format={self.format!r}, numpy_header={self.numpy_header!r})")


cdef inline uint64_t _load_be(const uint8_t *p, Py_ssize_t n) noexcept nogil:
    cdef uint64_t v = 0
    cdef Py_ssize_t i
    for i in range(n):
        v = (v << 8) | p[i]
    return v


cdef inline void _store_be(uint8_t *p, Py_ssize_t n, uint64_t v) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n - 1, -1, -1):
        p[i] = <uint8_t> (v & 0xff)
        v >>= 8


cdef dict _descriptor_fields(const uint8_t *pointers, int n, int hab, Py_ssize_t plen):
    """The items of a descriptor packet: ``{id: (start, end)}`` for addressed
    items, and the immediate DESCRIPTOR_ID_ID value under ``"id"``."""
    cdef uint64_t *ptrs = NULL
    cdef spead_item_extent *ext = NULL
    cdef long count, k
    cdef int i
    cdef dict fields = {}
    if n == 0:
        return fields
    ptrs = <uint64_t *> malloc(n * sizeof(uint64_t))
    ext = <spead_item_extent *> malloc(n * sizeof(spead_item_extent))
    try:
        if ptrs == NULL or ext == NULL:
            raise MemoryError()
        for i in range(n):
            ptrs[i] = spead_load_be64(pointers + 8 * i)
        count = spead_item_extents(ptrs, n, hab, plen, ext)
        if count == -2:
            raise MemoryError()
        if count == -1:
            raise ValueError(f"a descriptor item's address is beyond the payload length {plen}")
        for k in range(count):
            if ext[k].immediate:
                if ext[k].id == DESCRIPTOR_ID_ID:
                    fields["id"] = ext[k].value
            else:
                fields[ext[k].id] = (ext[k].value, ext[k].value + ext[k].length)
    finally:
        free(ptrs)
        free(ext)
    return fields



def decode_raw_descriptor(data, int bug_compat=0) -> RawDescriptor:
    """Parse a descriptor: a complete SPEAD packet holding one whole heap.

    Fields the packet does not carry keep empty defaults. ``bug_compat``
    holds the PySPEAD bug-compatibility flags of the stream. Raises
    ``ValueError`` for malformed input.
    """
    cdef Py_buffer view
    cdef spead_packet pkt
    cdef int status, hab, n
    cdef const uint8_t *payload
    cdef Py_ssize_t plen, start, end, fsize, ssize, k
    cdef int var_mask
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        status = spead_decode_packet(<const uint8_t *> view.buf, <size_t> view.len, &pkt)
        if status != SPEAD_PACKET_OK:
            raise ValueError("malformed descriptor packet: "
                             + spead_packet_status_string(status).decode("ascii"))
        if pkt.payload_offset != 0:
            raise ValueError(f"descriptor packet has payload offset {pkt.payload_offset}, not 0 "
                             "(a descriptor must be a single-packet heap)")
        if pkt.heap_length >= 0 and pkt.heap_length != pkt.payload_length:
            raise ValueError(f"descriptor heap length {pkt.heap_length} differs from its "
                             f"payload length {pkt.payload_length}")
        hab = pkt.heap_address_bits
        n = pkt.n_items
        payload = pkt.payload
        plen = <Py_ssize_t> pkt.payload_length
        fields = _descriptor_fields(pkt.pointers, n, hab, plen)
        desc_id = fields.pop("id", None)
        raw = RawDescriptor()
        if desc_id is None:
            if DESCRIPTOR_ID_ID in fields:
                start, end = fields[DESCRIPTOR_ID_ID]
                if end - start > 8 or end == start:
                    raise ValueError(f"addressed descriptor ID of {end - start} bytes")
                desc_id = _load_be(payload + start, end - start)
            else:
                raise ValueError("descriptor has no DESCRIPTOR_ID_ID item")
        raw.id = desc_id
        if DESCRIPTOR_NAME_ID in fields:
            start, end = fields[DESCRIPTOR_NAME_ID]
            raw.name = PyBytes_FromStringAndSize(<const char *> payload + start, end - start)
        if DESCRIPTOR_DESCRIPTION_ID in fields:
            start, end = fields[DESCRIPTOR_DESCRIPTION_ID]
            raw.description = PyBytes_FromStringAndSize(<const char *> payload + start, end - start)
        if DESCRIPTOR_DTYPE_ID in fields:
            start, end = fields[DESCRIPTOR_DTYPE_ID]
            raw.numpy_header = PyBytes_FromStringAndSize(<const char *> payload + start, end - start)
        if DESCRIPTOR_FORMAT_ID in fields:
            start, end = fields[DESCRIPTOR_FORMAT_ID]
            if bug_compat & BUG_COMPAT_DESCRIPTOR_WIDTHS:
                fsize = BUGGY_FORMAT_ENTRY
            else:
                fsize = 1 + (64 - hab) // 8
            if (end - start) % fsize != 0:
                raise ValueError(f"descriptor format field of {end - start} bytes is not a "
                                 f"whole number of {fsize}-byte entries")
            fmt = []
            for k in range(start, end, fsize):
                fmt.append((chr(payload[k]), _load_be(payload + k + 1, fsize - 1)))
            raw.format = fmt
        if DESCRIPTOR_SHAPE_ID in fields:
            start, end = fields[DESCRIPTOR_SHAPE_ID]
            if bug_compat & BUG_COMPAT_DESCRIPTOR_WIDTHS:
                ssize = BUGGY_SHAPE_ENTRY
            else:
                ssize = 1 + hab // 8
            var_mask = 2 if bug_compat & BUG_COMPAT_SHAPE_BIT_1 else 1
            if (end - start) % ssize != 0:
                raise ValueError(f"descriptor shape field of {end - start} bytes is not a "
                                 f"whole number of {ssize}-byte entries")
            shape = []
            for k in range(start, end, ssize):
                if payload[k] & var_mask:
                    shape.append(-1)
                else:
                    shape.append(_load_be(payload + k + 1, ssize - 1))
            raw.shape = shape
        return raw
    finally:
        PyBuffer_Release(&view)


cdef bytes _be_bytes(value, Py_ssize_t width, what):
    cdef object v = operator.index(value)
    if v < 0 or v >= (_ONE << (8 * width)):
        raise ValueError(f"{what} {v} does not fit in {width} bytes")
    return (<object> v).to_bytes(width, "big")


def encode_raw_descriptor(raw: RawDescriptor, int heap_address_bits=40,
                          int bug_compat=0) -> bytes:
    """Encode ``raw`` as a descriptor packet (a one-packet heap, heap cnt 1).

    Item pointers: HEAP_CNT, HEAP_LENGTH, PAYLOAD_OFFSET, PAYLOAD_LENGTH and
    DESCRIPTOR_ID_ID as immediates, then addressed NAME, DESCRIPTION, FORMAT,
    SHAPE and, when ``raw.numpy_header`` is not empty, DTYPE; the payload
    holds those fields in that order.
    """
    cdef Py_ssize_t fsize, ssize, n_items, plen, k
    cdef int var_flag
    cdef uint64_t max_value
    cdef uint8_t *out
    if heap_address_bits <= 0 or heap_address_bits >= 64 or heap_address_bits % 8 != 0:
        raise ValueError(f"heap_address_bits must be a multiple of 8 strictly between 0 and 64, "
                         f"not {heap_address_bits}")
    if bug_compat & BUG_COMPAT_DESCRIPTOR_WIDTHS:
        fsize = BUGGY_FORMAT_ENTRY
        ssize = BUGGY_SHAPE_ENTRY
    else:
        fsize = 1 + (64 - heap_address_bits) // 8
        ssize = 1 + heap_address_bits // 8
    var_flag = 2 if bug_compat & BUG_COMPAT_SHAPE_BIT_1 else 1
    max_value = (<uint64_t> 1 << heap_address_bits) - 1

    name = bytes(raw.name)
    description = bytes(raw.description)
    numpy_header = bytes(raw.numpy_header)
    fmt_parts = []
    for entry in raw.format:
        code, bits = entry
        if isinstance(code, str):
            code = code.encode("ascii")
        if not isinstance(code, bytes) or len(code) != 1:
            raise ValueError(f"format code {code!r} is not a single character")
        fmt_parts.append(code)
        fmt_parts.append(_be_bytes(bits, fsize - 1, "format bit count"))
    shape_parts = []
    for size in raw.shape:
        if size is None or size < 0:
            shape_parts.append(bytes([var_flag]) + bytes(ssize - 1))
        else:
            shape_parts.append(b"\x00" + _be_bytes(size, ssize - 1, "shape dimension"))
    fmt = b"".join(fmt_parts)
    shp = b"".join(shape_parts)
    fields = [(DESCRIPTOR_NAME_ID, name), (DESCRIPTOR_DESCRIPTION_ID, description),
              (DESCRIPTOR_FORMAT_ID, fmt), (DESCRIPTOR_SHAPE_ID, shp)]
    if numpy_header:
        fields.append((DESCRIPTOR_DTYPE_ID, numpy_header))
    plen = sum(len(f[1]) for f in fields)
    if <uint64_t> plen > max_value:
        raise ValueError(f"descriptor of {plen} bytes is too large for "
                         f"{heap_address_bits}-bit heap addresses")
    desc_id = operator.index(raw.id)
    if desc_id < 0 or desc_id > max_value:
        raise ValueError(f"item ID {desc_id:#x} does not fit in {heap_address_bits} bits")

    n_items = 5 + len(fields)
    result = PyBytes_FromStringAndSize(NULL, 8 + 8 * n_items + plen)
    out = <uint8_t *> PyBytes_AS_STRING(result)
    spead_write_header(out, heap_address_bits, <int> n_items)
    spead_store_be64(out + 8, spead_make_pointer(1, HEAP_CNT_ID, 1, heap_address_bits))
    spead_store_be64(out + 16, spead_make_pointer(1, HEAP_LENGTH_ID, plen, heap_address_bits))
    spead_store_be64(out + 24, spead_make_pointer(1, PAYLOAD_OFFSET_ID, 0, heap_address_bits))
    spead_store_be64(out + 32, spead_make_pointer(1, PAYLOAD_LENGTH_ID, plen, heap_address_bits))
    spead_store_be64(out + 40, spead_make_pointer(1, DESCRIPTOR_ID_ID, <uint64_t> desc_id,
                                                  heap_address_bits))
    cdef Py_ssize_t addr = 0
    cdef Py_ssize_t pos = 48
    cdef Py_ssize_t payload_pos = 8 + 8 * n_items
    cdef bytes chunk
    for fid, chunk in fields:
        spead_store_be64(out + pos, spead_make_pointer(0, fid, addr, heap_address_bits))
        pos += 8
        if len(chunk):
            memcpy(out + payload_pos + addr, PyBytes_AS_STRING(chunk), len(chunk))
        addr += len(chunk)
    return result


# Bit-level codec for formats without a numpy equivalent.

# numpy's limit on dimensions; the nested lists of a value stay within it too,
# so a received shape cannot drive the recursion below off the C stack.
_MAX_DIMS = 64
# An empty value is nested lists down to its first zero dimension; a shape
# such as (2**40, 0) would need that many lists, so it is refused instead.
_MAX_EMPTY_LISTS = 1 << 16


cdef object _check_shape(shape):
    """``shape`` as a tuple with its element count; ValueError if unusable."""
    shape = tuple(shape)
    if len(shape) > _MAX_DIMS:
        raise ValueError(f"shape has {len(shape)} dimensions; at most {_MAX_DIMS} are supported")
    count = 1
    for d in shape:
        if d < 0:
            raise ValueError(f"shape {shape} has a negative dimension")
        count *= d
    if count == 0:
        lists = 1
        for d in shape:
            if d == 0:
                break
            lists *= d
            if lists > _MAX_EMPTY_LISTS:
                raise ValueError(f"an empty value of shape {shape} would need {lists} or more "
                                 f"empty lists (at most {_MAX_EMPTY_LISTS} are made)")
    return shape, count

cdef inline uint64_t _read_bits(const uint8_t *p, Py_ssize_t pos, int bits) noexcept nogil:
    """Read ``bits`` (at most 64) bits starting at bit ``pos``, MSB first."""
    cdef uint64_t v = 0
    cdef Py_ssize_t byte = pos >> 3
    cdef int off = pos & 7
    cdef int avail, take
    while bits > 0:
        avail = 8 - off
        take = avail if avail < bits else bits
        v = (v << take) | ((p[byte] >> (avail - take)) & ((1 << take) - 1))
        bits -= take
        off = 0
        byte += 1
    return v


cdef inline void _write_bits(uint8_t *p, Py_ssize_t pos, int bits, uint64_t v) noexcept nogil:
    """OR the low ``bits`` (at most 64) bits of ``v`` in at bit ``pos``, MSB first."""
    cdef Py_ssize_t byte = pos >> 3
    cdef int off = pos & 7
    cdef int avail, take
    while bits > 0:
        avail = 8 - off
        take = avail if avail < bits else bits
        p[byte] |= <uint8_t> (((v >> (bits - take)) & ((1 << take) - 1)) << (avail - take))
        bits -= take
        off = 0
        byte += 1


cdef class BitFormat:
    """A SPEAD format (list of ``(code, bits)``) compiled for bit-level
    packing and unpacking.

    Codes: ``u`` unsigned and ``i`` signed (two's complement) integers of
    any width, ``b`` boolean (non-zero is true), ``c`` 8-bit ASCII character,
    ``f`` IEEE float of 32 or 64 bits.  A character unpacks as a one-byte
    ``bytes`` (as spead2 returns it; an item whose format is just ``c8``
    joins its characters into a ``str`` elsewhere) and packs from a
    one-character ``str`` or a one-byte ``bytes``.
    """

    cdef list _codes
    cdef list _bits
    cdef int _n
    cdef readonly Py_ssize_t itemsize_bits
    cdef readonly tuple format

    def __init__(self, format):
        codes = []
        widths = []
        entries = []
        total = 0
        for code, bits in format:
            bits = operator.index(bits)
            if code not in ("u", "i", "b", "c", "f"):
                raise ValueError(f"unsupported format code {code!r}")
            if bits <= 0:
                raise ValueError(f"format field {code}{bits} has no bits")
            if code == "c" and bits != 8:
                raise ValueError(f"character fields must have 8 bits, not {bits}")
            if code == "f" and bits not in (32, 64):
                raise ValueError(f"float fields must have 32 or 64 bits, not {bits}")
            codes.append(ord(code))
            widths.append(bits)
            entries.append((code, bits))
            total += bits
        if not codes:
            raise ValueError("format must not be empty")
        self._codes = codes
        self._bits = widths
        self._n = len(codes)
        self.itemsize_bits = total
        self.format = tuple(entries)

    cdef object _read_field(self, const uint8_t *p, Py_ssize_t pos, int code, Py_ssize_t bits):
        cdef uint64_t v
        cdef char ch
        cdef uint32_t u32
        cdef float f32
        cdef double f64
        cdef Py_ssize_t r, take
        if bits > 64:
            big = 0
            r = bits
            while r > 0:
                take = 64 if r > 64 else r
                big = (big << take) | _read_bits(p, pos, <int> take)
                pos += take
                r -= take
            if code == 0x69 and big >> (bits - 1):
                big -= _ONE << bits
            elif code == 0x62:
                return big != 0
            return big
        v = _read_bits(p, pos, <int> bits)
        if code == 0x75:        # u
            return v
        elif code == 0x69:      # i
            if bits < 64 and (v >> (bits - 1)) & 1:
                v |= (~<uint64_t> 0) << bits
            return <int64_t> v
        elif code == 0x62:      # b
            return v != 0
        elif code == 0x63:      # c
            if v >= 128:
                raise UnicodeDecodeError("ascii", bytes([v]), 0, 1, "ordinal not in range(128)")
            ch = <char> v
            return PyBytes_FromStringAndSize(&ch, 1)
        else:                   # f
            if bits == 32:
                u32 = <uint32_t> v
                memcpy(&f32, &u32, 4)
                return f32
            memcpy(&f64, &v, 8)
            return f64

    cdef object _read_element(self, const uint8_t *p, Py_ssize_t *pos):
        cdef int i
        cdef Py_ssize_t bits
        if self._n == 1:
            bits = self._bits[0]
            value = self._read_field(p, pos[0], self._codes[0], bits)
            pos[0] += bits
            return value
        fields = []
        for i in range(self._n):
            bits = self._bits[i]
            fields.append(self._read_field(p, pos[0], self._codes[i], bits))
            pos[0] += bits
        return tuple(fields)

    cdef object _unpack_dims(self, const uint8_t *p, Py_ssize_t *pos, tuple shape, int dim):
        cdef Py_ssize_t i, n
        n = shape[dim]
        out = []
        if dim == len(shape) - 1:
            for i in range(n):
                out.append(self._read_element(p, pos))
        else:
            for i in range(n):
                out.append(self._unpack_dims(p, pos, shape, dim + 1))
        return out

    def unpack(self, data, shape) -> object:
        """Decode ``data`` as an array of ``shape`` (all dimensions known).

        Returns nested lists, or one element for an empty shape; an element
        is a Python scalar, or a tuple of them for a multi-field format.
        Raises ``ValueError`` when ``data`` is not exactly the padded size,
        the shape has more than 64 dimensions, or the value is empty but
        would need more than 65536 empty lists (e.g. shape ``(2**40, 0)``).
        """
        cdef Py_buffer view
        cdef Py_ssize_t pos = 0
        shape, count = _check_shape(shape)
        need = (count * self.itemsize_bits + 7) // 8
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            if view.len != need:
                raise ValueError(f"{view.len} bytes given for {count} elements of "
                                 f"{self.itemsize_bits} bits ({need} bytes expected)")
            if not shape:
                return self._read_element(<const uint8_t *> view.buf, &pos)
            return self._unpack_dims(<const uint8_t *> view.buf, &pos, shape, 0)
        finally:
            PyBuffer_Release(&view)

    cdef void _write_field(self, uint8_t *p, Py_ssize_t pos, int code, Py_ssize_t bits,
                           value) except *:
        cdef uint64_t v
        cdef float f32
        cdef double f64
        cdef uint32_t u32
        cdef Py_ssize_t r, take
        if code == 0x75 or code == 0x69:
            iv = operator.index(value)
            if code == 0x75:
                if iv < 0 or iv >> bits:
                    raise ValueError(f"{iv} does not fit in an unsigned {bits}-bit field")
            else:
                if iv < -(_ONE << (bits - 1)) or iv >= (_ONE << (bits - 1)):
                    raise ValueError(f"{iv} does not fit in a signed {bits}-bit field")
                iv &= (_ONE << bits) - 1
        elif code == 0x62:
            iv = 1 if value else 0
        elif code == 0x63:
            if isinstance(value, str):
                value = value.encode("ascii")
            if not isinstance(value, bytes) or len(value) != 1:
                raise ValueError(f"character field needs a single character, not {value!r}")
            iv = value[0]
        else:
            if bits == 32:
                f32 = float(value)
                memcpy(&u32, &f32, 4)
                _write_bits(p, pos, 32, u32)
            else:
                f64 = float(value)
                memcpy(&v, &f64, 8)
                _write_bits(p, pos, 64, v)
            return
        if bits <= 64:
            _write_bits(p, pos, <int> bits, <uint64_t> iv)
            return
        r = bits
        while r > 0:
            take = 64 if r > 64 else r
            _write_bits(p, pos, <int> take, <uint64_t> ((iv >> (r - take)) & ((_ONE << take) - 1)))
            pos += take
            r -= take

    cdef void _write_element(self, uint8_t *p, Py_ssize_t *pos, value) except *:
        cdef int i
        cdef Py_ssize_t bits
        if self._n == 1:
            bits = self._bits[0]
            self._write_field(p, pos[0], self._codes[0], bits, value)
            pos[0] += bits
            return
        try:
            n = len(value)
        except TypeError:
            raise ValueError(f"element {value!r} of a {self._n}-field format "
                             "is not a sequence") from None
        if n != self._n:
            raise ValueError(f"element {value!r} has {n} fields, expected {self._n}")
        for i in range(self._n):
            bits = self._bits[i]
            self._write_field(p, pos[0], self._codes[i], bits, value[i])
            pos[0] += bits

    cdef void _pack_dims(self, uint8_t *p, Py_ssize_t *pos, value, tuple shape,
                         int dim) except *:
        cdef Py_ssize_t i, n
        n = shape[dim]
        try:
            got = len(value)
        except TypeError:
            raise ValueError(f"value {value!r} is not a sequence of length {n}") from None
        if got != n:
            raise ValueError(f"dimension {dim} has length {got}, expected {n}")
        if dim == len(shape) - 1:
            for i in range(n):
                self._write_element(p, pos, value[i])
        else:
            for i in range(n):
                self._pack_dims(p, pos, value[i], shape, dim + 1)

    def pack(self, value, shape) -> bytes:
        """Encode ``value`` (nested sequences matching ``shape``, whose
        dimensions are all known, or one element for an empty shape)."""
        cdef Py_ssize_t pos = 0
        shape, count = _check_shape(shape)
        need = (count * self.itemsize_bits + 7) // 8
        if hasattr(value, "tolist"):
            value = value.tolist()
        result = PyBytes_FromStringAndSize(NULL, need)
        cdef uint8_t *out = <uint8_t *> PyBytes_AS_STRING(result)
        memset(out, 0, need)
        if not shape:
            self._write_element(out, &pos, value)
        else:
            self._pack_dims(out, &pos, value, shape, 0)
        return result
