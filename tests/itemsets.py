"""Named item sets shared by both spead2 implementations.

This module is imported by the project's tests (with our ``spead2``) and by
the scripts in ``ref_scripts/`` (run by the reference implementation's
interpreter), so it uses only numpy, the standard library and the part of the
``spead2`` API that both implementations share:

- ``ItemGroup.add_item(id, name, description, shape, dtype=None, order='C',
  format=None, value=None)``, ``ig[name].value``, ``ig.update(heap)``;
- ``spead2.send.ItemGroup(flavour=...)``, ``get_heap()``, ``get_end()``;
- ``spead2.Flavour(version, item_pointer_bits, heap_address_bits, bug_compat)``;
- iterating a receive stream and ``stream.stop()``.

The ``spead2`` module is always passed in by the caller; nothing here imports
it. Every item set has a deterministic value for each heap index, and the
value a receiver should see is the value that was sent (compared with
:func:`value_mismatch`, which ignores byte order and memory layout).

Received values travel between processes as plain Python data
(:func:`encode_value` / :func:`decode_value`), never as pickled numpy objects,
so the two environments may run different numpy versions.
"""

import importlib
import threading
import time

import numpy as np

#: Flavours the interoperability tests cover: name -> (heap_address_bits, bug_compat).
FLAVOURS = {
    "64-40": (40, 0),
    "64-48": (48, 0),
    "64-32": (32, 0),
    "64-40-bc7": (40, 7),
}

DUMP_FORMAT = 1


class ItemSpec:
    """One item of an item set: its descriptor and a value for each heap.

    ``make(i)`` is the value of heap ``i`` as a receiver should see it. It is
    also the value sent, unless ``send`` is given: ``send(make(i))`` is then
    sent instead (for values that the reference cannot send in their received
    form).
    """

    __slots__ = ("id", "name", "description", "shape", "dtype", "order", "format", "make", "send")

    def __init__(self, id, name, description, shape, make, dtype=None, order="C", format=None,
                 send=None):
        self.id = id
        self.name = name
        self.description = description
        self.shape = tuple(shape)
        self.dtype = None if dtype is None else np.dtype(dtype)
        self.order = order
        self.format = None if format is None else [tuple(f) for f in format]
        self.make = make
        self.send = send

    def send_value(self, i):
        value = self.make(i)
        return value if self.send is None else self.send(value)

    def add_to(self, ig):
        return ig.add_item(self.id, self.name, self.description, self.shape,
                           dtype=self.dtype, order=self.order, format=self.format)


class ItemSet:
    """A named list of items with deterministic values for heap ``i``."""

    def __init__(self, name, summary, items):
        self.name = name
        self.summary = summary
        self.items = list(items)
        ids = [item.id for item in self.items]
        names = [item.name for item in self.items]
        assert len(set(ids)) == len(ids) and len(set(names)) == len(names), name

    def add_to(self, ig):
        """Add every item's descriptor (without a value) to item group ``ig``."""
        for item in self.items:
            item.add_to(ig)

    def values(self, i):
        """The values a receiver should see in heap ``i``: name -> value."""
        return {item.name: item.make(i) for item in self.items}

    def send_values(self, i):
        """The values to send in heap ``i``: name -> value."""
        return {item.name: item.send_value(i) for item in self.items}

    def __repr__(self):
        return f"ItemSet({self.name!r})"


# ---------------------------------------------------------------------------
# Value generators. Integer arithmetic only, so that values are identical in
# every environment; floats are chosen to be exactly representable.

def _arr(values, dtype, shape=None, order="C"):
    a = np.array(values, dtype=np.dtype(dtype))
    if shape is not None:
        a = a.reshape(shape)
    return np.asfortranarray(a) if order == "F" else a


_RECORD_DTYPE = np.dtype([("x", "<u2"), ("y", ">f4"), ("z", "i1", (2,))])
_PAIR_DTYPE = np.dtype([("a", "<i4"), ("b", ">f8")])
_META_DTYPE = np.dtype([("id", "<u4"), ("gain", ">f8"), ("tag", "S3")])
# What a multi-field numpy-mappable SPEAD format becomes (field names f0, f1...).
_F32_I8_DTYPE = np.dtype([("f0", "<f4"), ("f1", "i1")])


def _as_int64(value):
    # The reference sends a signed format of up to 63 bits with no numpy
    # equivalent (i24, i48) through a uint64 array, which numpy 2 refuses to
    # build from a negative Python int but will from a numpy integer.
    return np.int64(value)


def _record(i):
    return np.array([(i % 65536, 1.5 + i, (1, -2)),
                     (2, -2.5, (3, i % 128)),
                     (65535, 0.125 * i, (-128, 127))], dtype=_RECORD_DTYPE)


SIMPLE = ItemSet("simple", "two small items: a u32 counter (immediate) and an int16 vector", [
    ItemSpec(0x1000, "index", "heap index", (), format=[("u", 32)],
             make=lambda i: np.uint32(i)),
    ItemSpec(0x1001, "samples", "eight little-endian int16 samples", (8,), dtype="<i2",
             make=lambda i: _arr([(k * (i + 1) - 4) for k in range(8)], "<i2")),
])

NUMPY = ItemSet("numpy", "numpy-described items: many dtypes, structured, Fortran order", [
    ItemSpec(0x1100, "u8_vector", "uint8 vector", (5,), dtype="u1",
             make=lambda i: _arr([(3 * k + i) % 256 for k in range(5)], "u1")),
    ItemSpec(0x1101, "i16_matrix_be", "big-endian int16 matrix", (3, 4), dtype=">i2",
             make=lambda i: _arr([-37 * k + i for k in range(12)], ">i2", (3, 4))),
    ItemSpec(0x1102, "f64_vector", "float64 vector", (7,), dtype="<f8",
             make=lambda i: _arr([k / 8 + i for k in range(7)], "<f8")),
    ItemSpec(0x1103, "c64_be", "big-endian complex64 pair", (2,), dtype=">c8",
             make=lambda i: _arr([complex(1, 2 * i), complex(-3.5, 0.25)], ">c8")),
    ItemSpec(0x1104, "bool_vector", "bool vector", (3,), dtype="?",
             make=lambda i: _arr([(i + k) % 2 == 0 for k in range(3)], "?")),
    ItemSpec(0x1105, "u32_fortran", "uint32 matrix in Fortran order, value given in C order",
             (2, 3), dtype="<u4", order="F",
             make=lambda i: _arr([1000 * i + k for k in range(6)], "<u4", (2, 3))),
    ItemSpec(0x1106, "i64_fortran_be", "big-endian int64 matrix in Fortran order",
             (3, 2), dtype=">i8", order="F",
             make=lambda i: _arr([-(2 ** 40) * k + i for k in range(6)], ">i8", (3, 2), "F")),
    ItemSpec(0x1107, "records", "structured dtype with mixed byte order and a sub-array",
             (3,), dtype=_RECORD_DTYPE, make=_record),
    ItemSpec(0x1108, "record_scalar", "zero-dimensional structured value", (), dtype=_PAIR_DTYPE,
             make=lambda i: np.array((i - 5, 0.5 * i), dtype=_PAIR_DTYPE)[()]),
    ItemSpec(0x1109, "f32_scalar", "big-endian float32 scalar (fits an immediate)", (), dtype=">f4",
             make=lambda i: np.float32(i + 0.25)),
    ItemSpec(0x110A, "u16_cube", "uint16 3-D array", (2, 3, 4), dtype="<u2",
             make=lambda i: _arr([(k * 2731 + i) % 65536 for k in range(24)], "<u2", (2, 3, 4))),
])

IMMEDIATE = ItemSet("immediate", "fixed-size items small enough to travel as immediates", [
    ItemSpec(0x1200, "imm_u8", "u8 scalar", (), format=[("u", 8)],
             make=lambda i: np.uint8(i % 256)),
    ItemSpec(0x1201, "imm_i16", "negative i16 scalar", (), format=[("i", 16)],
             make=lambda i: np.int16(-1000 - i)),
    ItemSpec(0x1202, "imm_u32", "u32 scalar with the top bit set", (), format=[("u", 32)],
             make=lambda i: np.uint32(0xDEADBEEF ^ i)),
    ItemSpec(0x1203, "imm_i32", "i32 scalar near the minimum", (), format=[("i", 32)],
             make=lambda i: np.int32(-(2 ** 31) + i)),
    ItemSpec(0x1204, "imm_np_u16_pair", "numpy big-endian uint16 pair", (2,), dtype=">u2",
             make=lambda i: _arr([i, 0xFFFF - i], ">u2")),
    ItemSpec(0x1205, "imm_chars", "four c8 characters", (4,), format=[("c", 8)],
             make=lambda i: "ab%02d" % (i % 100)),
    ItemSpec(0x1206, "imm_i24", "negative i24 (bit-level fallback, sign extension)", (),
             format=[("i", 24)], make=lambda i: -(1000 * i + 1), send=_as_int64),
    ItemSpec(0x1207, "imm_u40", "u40 (immediate except in 64-32)", (), format=[("u", 40)],
             make=lambda i: 0x1234567890 + i),
    ItemSpec(0x1208, "imm_f32", "f32 scalar", (), format=[("f", 32)],
             make=lambda i: np.float32(1.5 * i - 7)),
    ItemSpec(0x1209, "imm_np_i8", "numpy int8 scalar", (), dtype="i1",
             make=lambda i: np.int8(-i)),
])

FORMATS = ItemSet("formats", "format-described items: u48, c8 strings, u12, u1 and mappable formats", [
    ItemSpec(0x1300, "u48_scalar", "u48 scalar", (), format=[("u", 48)],
             make=lambda i: 0x9234567890AB + i),
    ItemSpec(0x1301, "i48_scalar", "negative i48 scalar", (), format=[("i", 48)],
             make=lambda i: -0x6DCBA9876F55 - i, send=_as_int64),
    ItemSpec(0x1302, "u48_vector", "variable-length u48 vector", (None,), format=[("u", 48)],
             make=lambda i: [(k * 0x10000000001 + i) % 2 ** 48 for k in range(i + 3)]),
    ItemSpec(0x1303, "text", "variable-length c8 string", (None,), format=[("c", 8)],
             make=lambda i: f"heap {i}: " + "spead" * (i % 3 + 1)),
    ItemSpec(0x1304, "u12_triple", "three u12 values", (3,), format=[("u", 12)],
             make=lambda i: [0xABC ^ i, 0xDEF, 0x123 + i]),
    ItemSpec(0x1305, "u12_vector", "variable-length u12 vector (odd lengths need padding)",
             (None,), format=[("u", 12)],
             make=lambda i: [(37 * k + i) % 4096 for k in range(5 + i)]),
    ItemSpec(0x1306, "i12_vector", "variable-length i12 vector", (None,), format=[("i", 12)],
             make=lambda i: [-1348, -529, 291, (100 * i) % 4096 - 2048]),
    ItemSpec(0x1307, "bits", "ten u1 values", (10,), format=[("u", 1)],
             make=lambda i: [(k + i + k // 3) % 2 for k in range(10)]),
    ItemSpec(0x1308, "f32_i8_pairs", "multi-field mappable format (structured dtype)", (2,),
             format=[("f", 32), ("i", 8)],
             make=lambda i: np.array([(1.5 + i, 3), (-2.5, -(i % 128))], dtype=_F32_I8_DTYPE)),
    ItemSpec(0x1309, "u64_vector", "u64 vector", (3,), format=[("u", 64)],
             make=lambda i: _arr([2 ** 64 - 1 - i, 0, 2 ** 63 + i], np.uint64)),
    ItemSpec(0x130A, "f64_scalar", "f64 scalar", (), format=[("f", 64)],
             make=lambda i: np.float64(i / 4)),
    ItemSpec(0x130B, "flag_bytes", "b8 vector", (2,), format=[("b", 8)],
             make=lambda i: _arr([True, i % 2 == 0], np.bool_)),
])

LARGE = ItemSet("large", "a 70,000-element float32 array (many packets per heap)", [
    ItemSpec(0x1400, "big", "70000 float32 values", (70000,), dtype="<f4",
             make=lambda i: np.arange(70000, dtype=np.float32) * np.float32(0.5) + np.float32(i)),
    ItemSpec(0x1401, "index", "heap index", (), format=[("u", 32)],
             make=lambda i: np.uint32(i)),
])

MIX = ItemSet("mix", "a mixture: numpy, structured, Fortran, immediates, fallback formats, strings", [
    ItemSpec(0x1500, "timestamp", "u48 timestamp", (), format=[("u", 48)],
             make=lambda i: 1_000_000 * i + 12345),
    ItemSpec(0x1501, "source", "source name", (None,), format=[("c", 8)],
             make=lambda i: f"source-{i}"),
    ItemSpec(0x1502, "spectrum", "big-endian int16 spectrum", (1024,), dtype=">i2",
             make=lambda i: _arr([(k * (i + 1)) % 2000 - 1000 for k in range(1024)], ">i2")),
    ItemSpec(0x1503, "gains", "complex128 gains in Fortran order", (4, 2), dtype="<c16", order="F",
             make=lambda i: _arr([complex(k, -i) for k in range(8)], "<c16", (4, 2), "F")),
    ItemSpec(0x1504, "flags", "variable-length u12 flags", (None,), format=[("u", 12)],
             make=lambda i: [(i * 7 + k) % 4096 for k in range(i % 4 + 1)]),
    ItemSpec(0x1505, "state", "uint8 state", (), dtype="u1",
             make=lambda i: np.uint8(i % 256)),
    ItemSpec(0x1506, "meta", "structured metadata with a byte string field", (2,), dtype=_META_DTYPE,
             make=lambda i: np.array([(i, 0.5, b"abc"), (2 ** 32 - 1, -i / 2, b"x")],
                                     dtype=_META_DTYPE)),
    ItemSpec(0x1507, "vis", "float32 visibilities", (5000,), dtype="<f4",
             make=lambda i: (np.arange(5000, dtype=np.float32) - np.float32(2500)) / np.float32(4)
             + np.float32(i)),
])

ITEM_SETS = {s.name: s for s in (SIMPLE, NUMPY, IMMEDIATE, FORMATS, LARGE, MIX)}


def make_flavour(spead2, heap_address_bits=40, bug_compat=0):
    return spead2.Flavour(4, 64, heap_address_bits, bug_compat)


# ---------------------------------------------------------------------------
# Sending and receiving, shared by both implementations.

def send_heaps(spead2, send_heap, itemset, n_heaps, flavour):
    """Send ``n_heaps`` heaps of ``itemset`` then an end-of-stream heap.

    ``send_heap`` is the stream's ``send_heap``. The descriptors go in the
    first heap only; every heap carries every item's value.
    """
    send = importlib.import_module(spead2.__name__ + ".send")
    if isinstance(itemset, str):
        itemset = ITEM_SETS[itemset]
    ig = send.ItemGroup(flavour=flavour)
    itemset.add_to(ig)
    for i in range(n_heaps):
        for name, value in itemset.send_values(i).items():
            ig[name].value = value
        send_heap(ig.get_heap())
    send_heap(ig.get_end())


def collect_heaps(spead2, stream, timeout, stop_when=None, grace=5.0, stop_wait=10.0):
    """Receive from ``stream`` until it stops by itself or time runs out.

    The stream is iterated in a helper thread so that a stream that never
    stops cannot block the caller. Time runs out ``timeout`` seconds after
    the start, or ``grace`` seconds after ``stop_when()`` first returns true
    (polled; e.g. "the sender has exited"). The stream is then stopped, and if
    the iteration still does not end within ``stop_wait`` seconds the thread
    is abandoned. Returns a dump:
    ``{'heaps': [{'cnt', 'values': {name: value}}], 'items': {name:
    metadata}, 'end': 'stopped' | 'timeout' | 'hung', 'errors': [...]}``
    with the received values as they came.
    """
    ig = spead2.ItemGroup()
    heaps = []
    errors = []
    done = threading.Event()

    def run():
        try:
            for heap in stream:
                try:
                    updated = ig.update(heap)
                except Exception as exc:  # recorded, and the stream keeps running
                    errors.append(f"heap {getattr(heap, 'cnt', '?')}: update: {exc!r}")
                    continue
                heaps.append({"cnt": int(heap.cnt),
                              "values": {name: item.value for name, item in updated.items()}})
        except Exception as exc:
            errors.append(f"iteration: {exc!r}")
        finally:
            done.set()

    thread = threading.Thread(target=run, name="collect_heaps", daemon=True)
    start = time.monotonic()
    deadline = start + timeout
    thread.start()
    end = "stopped"
    while not done.wait(0.05):
        now = time.monotonic()
        if stop_when is not None and stop_when():
            deadline = min(deadline, now + grace)
            stop_when = None
        if now >= deadline:
            end = "timeout"
            try:
                stream.stop()
            except Exception as exc:
                errors.append(f"stop: {exc!r}")
            if not done.wait(stop_wait):
                end = "hung"
            break
    return {
        "format": DUMP_FORMAT,
        "heaps": list(heaps),
        "items": {name: item_metadata(item) for name, item in list(ig.items())},
        "end": end,
        "errors": list(errors),
        "elapsed": time.monotonic() - start,
    }


def item_metadata(item):
    """The descriptor fields of a received item, as plain Python data."""
    return {
        "id": int(item.id),
        "description": item.description,
        "shape": item.shape,
        "dtype": None if item.dtype is None else np.lib.format.dtype_to_descr(np.dtype(item.dtype)),
        "order": item.order,
        "format": None if item.format is None else [tuple(f) for f in item.format],
    }


# ---------------------------------------------------------------------------
# Moving values between processes without pickling numpy objects.

def encode_value(value):
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            return ("objarray", value.shape, [encode_value(x) for x in value.flat])
        return ("ndarray", np.lib.format.dtype_to_descr(value.dtype), value.shape,
                np.ascontiguousarray(value).tobytes())
    if isinstance(value, np.generic):
        if value.dtype.hasobject:
            return ("objscalar", [encode_value(x) for x in value.item()])
        return ("scalar", np.lib.format.dtype_to_descr(value.dtype), np.asarray(value).tobytes())
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return ("py", value)
    if isinstance(value, list):
        return ("list", [encode_value(x) for x in value])
    if isinstance(value, tuple):
        return ("tuple", [encode_value(x) for x in value])
    return ("unknown", type(value).__module__ + "." + type(value).__qualname__, repr(value))


class UnknownValue:
    """Stands in for a value of a type that could not be sent between processes."""

    def __init__(self, type_name, text):
        self.type_name = type_name
        self.text = text

    def __repr__(self):
        return f"<{self.type_name}: {self.text}>"


def decode_value(enc):
    kind = enc[0]
    if kind == "ndarray":
        _, descr, shape, data = enc
        dtype = np.lib.format.descr_to_dtype(descr)
        return np.frombuffer(data, dtype=dtype).reshape(shape).copy()
    if kind == "scalar":
        _, descr, data = enc
        return np.frombuffer(data, dtype=np.lib.format.descr_to_dtype(descr))[0]
    if kind == "objarray":
        _, shape, items = enc
        out = np.empty(shape, dtype=object)
        flat = [decode_value(x) for x in items]
        for k, x in enumerate(flat):
            out.flat[k] = x
        return out
    if kind == "objscalar":
        return tuple(decode_value(x) for x in enc[1])
    if kind == "py":
        return enc[1]
    if kind == "list":
        return [decode_value(x) for x in enc[1]]
    if kind == "tuple":
        return tuple(decode_value(x) for x in enc[1])
    return UnknownValue(enc[1], enc[2])


def encode_dump(dump):
    out = dict(dump)
    out["heaps"] = [{"cnt": h["cnt"], "values": {k: encode_value(v) for k, v in h["values"].items()}}
                    for h in dump["heaps"]]
    return out


def decode_dump(dump):
    out = dict(dump)
    out["heaps"] = [{"cnt": h["cnt"], "values": {k: decode_value(v) for k, v in h["values"].items()}}
                    for h in dump["heaps"]]
    return out


# ---------------------------------------------------------------------------
# Comparison.

def native_dtype(dtype):
    """``dtype`` with every field in native byte order."""
    return np.dtype(dtype).newbyteorder("=")


def _canonical_bytes(value):
    a = np.asarray(value)
    return np.ascontiguousarray(a.astype(native_dtype(a.dtype), copy=False)).tobytes()


def _python_mismatch(expected, actual):
    if type(actual) is not type(expected):
        return f"expected {type(expected).__name__} {expected!r}, got {type(actual).__name__} {actual!r}"
    if isinstance(expected, float) and expected != expected:
        return None if actual != actual else f"expected nan, got {actual!r}"
    if expected != actual:
        return f"expected {expected!r}, got {actual!r}"
    return None


def value_mismatch(expected, actual):
    """Why ``actual`` (a received value) is not ``expected``; ``None`` if it is.

    Numpy arrays and scalars must have the same type of container, shape and
    dtype up to byte order, and identical values (bit for bit). Values of
    formats without a numpy equivalent (given as Python lists and ints here)
    may come back as lists or as numpy object arrays, but every element must
    be the same Python type and value. Strings must be ``str``.
    """
    if isinstance(expected, np.ndarray) and not expected.dtype.hasobject:
        if not isinstance(actual, np.ndarray):
            return f"expected a numpy array, got {type(actual).__name__} {actual!r:.200}"
        if actual.shape != expected.shape:
            return f"shape {actual.shape} != expected {expected.shape}"
        if native_dtype(actual.dtype) != native_dtype(expected.dtype):
            return f"dtype {actual.dtype} != expected {expected.dtype} (up to byte order)"
        if _canonical_bytes(actual) != _canonical_bytes(expected):
            diff = np.flatnonzero(np.asarray(
                [_canonical_bytes(a) != _canonical_bytes(e)
                 for a, e in zip(actual.reshape(-1), expected.reshape(-1))]))
            first = int(diff[0]) if len(diff) else 0
            return (f"{len(diff)} of {expected.size} elements differ; first at flat index {first}: "
                    f"{actual.reshape(-1)[first]!r} != expected {expected.reshape(-1)[first]!r}")
        return None
    if isinstance(expected, np.generic):
        if not isinstance(actual, np.generic):
            return f"expected a numpy scalar {expected!r}, got {type(actual).__name__} {actual!r:.200}"
        if native_dtype(actual.dtype) != native_dtype(expected.dtype):
            return f"dtype {actual.dtype} != expected {expected.dtype} (up to byte order)"
        if _canonical_bytes(actual) != _canonical_bytes(expected):
            return f"{actual!r} != expected {expected!r}"
        return None
    if isinstance(expected, (list, tuple)) or (isinstance(expected, np.ndarray)):
        exp = expected.tolist() if isinstance(expected, np.ndarray) else list(expected)
        if isinstance(actual, np.ndarray) and actual.dtype.hasobject:
            if actual.ndim != 1 or actual.shape[0] != len(exp):
                return f"shape {actual.shape} != expected ({len(exp)},)"
            act = list(actual)
        elif isinstance(actual, (list, tuple)):
            act = list(actual)
        else:
            return f"expected a list or object array, got {type(actual).__name__} {actual!r:.200}"
        if len(act) != len(exp):
            return f"length {len(act)} != expected {len(exp)}"
        for k, (e, a) in enumerate(zip(exp, act)):
            why = value_mismatch(e, a)
            if why is not None:
                return f"element {k}: {why}"
        return None
    if isinstance(expected, (bool, int, float, str, bytes)):
        return _python_mismatch(expected, actual)
    raise TypeError(f"no comparison rule for expected value of type {type(expected).__name__}")


def values_equal(expected, actual):
    return value_mismatch(expected, actual) is None


def _shape_tuple(shape):
    return tuple(None if s is None else int(s) for s in shape)


def metadata_mismatches(itemset, items):
    """Differences between received descriptors (``dump['items']``) and the item set's."""
    problems = []
    for spec in itemset.items:
        meta = items.get(spec.name)
        if meta is None:
            problems.append(f"item {spec.name!r}: no descriptor received")
            continue
        where = f"item {spec.name!r} descriptor"
        if meta["id"] != spec.id:
            problems.append(f"{where}: id {meta['id']:#x} != {spec.id:#x}")
        if meta["description"] != spec.description or type(meta["description"]) is not str:
            problems.append(f"{where}: description {meta['description']!r} != {spec.description!r}")
        if not isinstance(meta["shape"], tuple) or _shape_tuple(meta["shape"]) != spec.shape:
            problems.append(f"{where}: shape {meta['shape']!r} != {spec.shape!r}")
        if meta["order"] != spec.order:
            problems.append(f"{where}: order {meta['order']!r} != {spec.order!r}")
        if spec.dtype is None:
            if meta["dtype"] is not None:
                problems.append(f"{where}: dtype {meta['dtype']!r}, expected None")
            if meta["format"] != spec.format:
                problems.append(f"{where}: format {meta['format']!r} != {spec.format!r}")
        else:
            if meta["format"] is not None:
                problems.append(f"{where}: format {meta['format']!r}, expected None")
            got = None if meta["dtype"] is None else np.lib.format.descr_to_dtype(meta["dtype"])
            if got is None or native_dtype(got) != native_dtype(spec.dtype):
                problems.append(f"{where}: dtype {got} != {spec.dtype} (up to byte order)")
    extra = sorted(set(items) - {spec.name for spec in itemset.items})
    if extra:
        problems.append(f"unexpected items received: {extra}")
    return problems


def dump_mismatches(itemset, dump, n_heaps):
    """Every way a received dump differs from ``n_heaps`` heaps of ``itemset``."""
    if isinstance(itemset, str):
        itemset = ITEM_SETS[itemset]
    problems = []
    if dump.get("end") != "stopped":
        problems.append(f"stream did not end by itself (end={dump.get('end')!r})")
    problems.extend(f"receiver error: {e}" for e in dump.get("errors", []))
    heaps = dump["heaps"]
    if len(heaps) != n_heaps:
        problems.append(f"received {len(heaps)} heaps, expected {n_heaps} "
                        f"(cnts {[h['cnt'] for h in heaps][:20]})")
    cnts = [h["cnt"] for h in heaps]
    if cnts != sorted(set(cnts)):
        problems.append(f"heap cnts not strictly increasing: {cnts[:20]}")
    for i, heap in enumerate(heaps[:n_heaps]):
        expected = itemset.values(i)
        got = heap["values"]
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        if missing:
            problems.append(f"heap {i} (cnt {heap['cnt']}): items missing: {missing}")
        if extra:
            problems.append(f"heap {i} (cnt {heap['cnt']}): unexpected items: {extra}")
        for name in sorted(set(expected) & set(got)):
            why = value_mismatch(expected[name], got[name])
            if why is not None:
                problems.append(f"heap {i} (cnt {heap['cnt']}): item {name!r}: {why}")
    problems.extend(metadata_mismatches(itemset, dump["items"]))
    return problems


def assert_dump_matches(itemset, dump, n_heaps, context=""):
    problems = dump_mismatches(itemset, dump, n_heaps)
    if problems:
        shown = "\n  ".join(problems[:15])
        more = f"\n  ... and {len(problems) - 15} more" if len(problems) > 15 else ""
        name = itemset if isinstance(itemset, str) else itemset.name
        raise AssertionError(f"{context}item set {name!r}: {len(problems)} problem(s):\n  {shown}{more}")
