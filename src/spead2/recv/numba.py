"""The place callback's data as a numba type (``pip install '.[numba]'``).

``chunk_place_data`` is the C struct a place callback receives, as a numba
Record: pointers as ``intp``, ``size_t`` as ``uintp``, ``chunk_id`` as
``int64``. Typical use::

    @numba.cfunc(types.void(types.CPointer(chunk_place_data), types.uintp), nopython=True)
    def place(data_ptr, data_size):
        data = numba.carray(data_ptr, 1)
        items = numba.carray(intp_to_voidptr(data[0].items), 2, dtype=np.int64)
        ...
    chunk_config.place = scipy.LowLevelCallable(place.ctypes, signature="void (void *, size_t)")

Importing this module imports numba (ImportError without it).
"""

from numba import types

__all__ = ["chunk_place_data"]

#: ``spead2.recv``'s chunk_place_data (80 bytes on 64-bit platforms).
chunk_place_data = types.Record.make_c_struct([
    ("packet", types.intp),
    ("packet_size", types.uintp),
    ("items", types.intp),
    ("chunk_id", types.int64),
    ("heap_index", types.uintp),
    ("heap_offset", types.uintp),
    ("batch_stats", types.intp),
    ("extra", types.intp),
    ("extra_offset", types.uintp),
    ("extra_size", types.uintp),
])
