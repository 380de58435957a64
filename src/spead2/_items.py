"""Descriptors, items and item groups: the metadata and values carried by heaps."""

import ast
import logging
import math
import weakref
from typing import (Any, Dict, ItemsView, Iterable, KeysView, List, Optional, Sequence, Tuple,
                    TypeVar, Union, ValuesView)

import numpy as np

from ._args import as_index, as_unsigned
from ._codec import BitFormat, RawDescriptor, encode_raw_descriptor
from ._flavour import Flavour
from ._logging import log

_STREAM_CTRL_ID = 0x06
_BUG_COMPAT_SWAP_ENDIAN = 4
_FIRST_USER_ID = 0x1000

#: Format fields with a numpy equivalent, as they lie on the wire (big-endian).
_FIELD_DTYPES = {
    ("u", 8): "u1", ("u", 16): ">u2", ("u", 32): ">u4", ("u", 64): ">u8",
    ("i", 8): "i1", ("i", 16): ">i2", ("i", 32): ">i4", ("i", 64): ">i8",
    ("f", 32): ">f4", ("f", 64): ">f8",
    ("b", 8): "?",
    ("c", 8): "S1",
}

_BYTE_ORDERS = ("=", "|", "<", ">")

Shape = Tuple[Optional[int], ...]
Format = List[Tuple[str, int]]


def _format_dtype(format: Format) -> Optional[np.dtype]:
    """The wire dtype of a format, or None when a field has no numpy equivalent."""
    fields = []
    for entry in format:
        dt = _FIELD_DTYPES.get(entry)
        if dt is None:
            return None
        fields.append(dt)
    if len(fields) == 1:
        return np.dtype(fields[0])
    return np.dtype([(f"f{i}", dt) for i, dt in enumerate(fields)])


def _ascii_text(value: Union[str, bytes], what: str) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii")
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    return value


def _parse_numpy_header(header: str) -> Tuple[Shape, str, np.dtype]:
    """Interpret ``.npy`` header text as (shape, order, dtype), safely."""
    try:
        fields = ast.literal_eval(header)
    except Exception as exc:
        raise ValueError(f"malformed numpy header {header!r}: {exc}") from None
    if not isinstance(fields, dict):
        raise ValueError(f"numpy header {header!r} is not a dict")
    keys = set(fields)
    if keys != {"descr", "fortran_order", "shape"}:
        raise ValueError(f"numpy header has keys {sorted(map(repr, keys))}, expected "
                         "'descr', 'fortran_order' and 'shape'")
    shape = fields["shape"]
    if not isinstance(shape, (tuple, list)) or not all(
            type(x) is int and x >= 0 for x in shape):
        raise ValueError(f"numpy header shape {shape!r} is not a tuple of non-negative ints")
    fortran_order = fields["fortran_order"]
    if not isinstance(fortran_order, bool):
        raise ValueError(f"numpy header fortran_order {fortran_order!r} is not a bool")
    try:
        dtype = np.lib.format.descr_to_dtype(fields["descr"])
    except Exception as exc:
        raise ValueError(f"numpy header descr {fields['descr']!r} is not a dtype: {exc}") from None
    if dtype.hasobject:
        raise TypeError(f"numpy header dtype {dtype} holds Python objects")
    return tuple(shape), "F" if fortran_order else "C", dtype


def _unicode_runs(dtype: np.dtype, offset: int = 0) -> List[Tuple[int, int, str]]:
    """Where numpy unicode (``U``) characters lie in one element of ``dtype``:
    (byte offset, number of UCS-4 characters, byte order) for each run."""
    if dtype.kind == "U":
        order = dtype.byteorder if dtype.byteorder in "<>" else "="
        return [(offset, dtype.itemsize // 4, order)]
    if dtype.subdtype is not None:
        base, shape = dtype.subdtype
        runs = _unicode_runs(base)
        count = math.prod(shape)
        if base.kind == "U":
            return [(offset, count * runs[0][1], runs[0][2])] if runs else []
        return [(offset + k * base.itemsize + o, n, order)
                for k in range(count) for o, n, order in runs]
    runs = []
    for name in dtype.names or ():
        field_dtype, field_offset = dtype.fields[name][:2]  # type: ignore[index]  # names => fields
        runs += _unicode_runs(field_dtype, offset + field_offset)
    return runs


def _check_unicode(data: memoryview, dtype: np.dtype, runs, what: str) -> None:
    """ValueError if a ``U`` character of ``data`` (elements of ``dtype``) is
    past U+10FFFF. numpy does not check received characters: it raises
    SystemError when it makes a str of one (indexing, repr), or, inside a
    structured value, makes a str that Python does not allow."""
    count = data.nbytes // dtype.itemsize
    for offset, n, order in runs:
        if count and n:
            codes = np.ndarray((count, n), np.dtype(order + "u4"), data, offset,
                               (dtype.itemsize, 4))
            if (codes > 0x10FFFF).any():
                raise ValueError(f"{what} holds characters that are not Unicode code points")


def _make_numpy_header(shape: Shape, dtype: np.dtype, order: str) -> str:
    return str({"descr": np.lib.format.dtype_to_descr(dtype),
                "fortran_order": order == "F",
                "shape": tuple(int(x) for x in shape)})  # type: ignore[arg-type]  # fixed shapes


_D = TypeVar("_D", bound="Descriptor")


class Descriptor:
    """The metadata of an item: ID, name, description, shape and type.

    The type is either a numpy ``dtype`` (with ``order`` ``'C'`` or ``'F'``)
    or a SPEAD ``format``: a list of ``(code, bits)`` with codes ``u i f b
    c``. A shape entry of ``None`` marks the one variable dimension a
    format-described item may have.
    """

    def __init__(self, id: int, name: str, description: str, shape: Iterable[Optional[int]],
                 dtype: Any = None, order: str = "C", format: Optional[Format] = None) -> None:
        self.id = as_unsigned(id, "id")
        self.name = _ascii_text(name, "name")
        self.description = _ascii_text(description, "description")
        if (dtype is None) == (format is None):
            raise ValueError("exactly one of dtype and format must be given")
        if order not in ("C", "F"):
            raise ValueError(f"order must be 'C' or 'F', not {order!r}")
        if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__"):
            raise TypeError(f"shape must be a sequence of dimensions, not {type(shape).__name__}")
        shape_list = list(shape)
        var_dim = -1
        for i, dim in enumerate(shape_list):
            if dim is None:
                if var_dim >= 0:
                    raise ValueError("at most one dimension may be variable")
                var_dim = i
                continue
            if type(dim) is not int:
                dim = as_index(dim, "a shape entry")
            if dim < 0:
                raise ValueError(f"shape entry {dim} is negative")
            shape_list[i] = dim

        bitfmt = None
        if dtype is not None:
            dtype = np.dtype(dtype)
            if dtype.hasobject:
                raise TypeError(f"dtype {dtype} holds Python objects")
            if dtype.subdtype is not None:
                # A subarray dtype adds its own dimensions to the item's shape.
                shape_list.extend(dtype.shape)
                dtype = dtype.base
            if dtype.itemsize == 0:
                raise ValueError(f"dtype {dtype} has no size")
            if var_dim >= 0:
                raise ValueError("a numpy-described item cannot have a variable dimension")
            itemsize_bits = dtype.itemsize * 8
            wire_dtype = dtype
        else:
            if order != "C":
                raise ValueError("a format-described item must have order 'C'")
            if isinstance(format, (str, bytes)) or not hasattr(format, "__iter__"):
                raise ValueError(f"format {format!r} is not a list of (code, bits)")
            entries = []
            for entry in format:  # type: ignore[union-attr]  # checked above
                try:
                    if isinstance(entry, (str, bytes)):
                        raise TypeError
                    code, bits = entry
                except (TypeError, ValueError):
                    raise ValueError(f"format entry {entry!r} is not a (code, bits) pair") from None
                if isinstance(code, bytes):
                    code = code.decode("ascii")
                if not isinstance(code, str):
                    raise ValueError(f"format code {code!r} is not a character")
                bits = as_index(bits, "a format bit count")
                entries.append((code, bits))
            format = entries
            bitfmt = BitFormat(format)
            itemsize_bits = bitfmt.itemsize_bits
            wire_dtype = _format_dtype(format)
            if wire_dtype is not None:
                bitfmt = None

        self._shape: Shape = tuple(shape_list)
        self._dtype: Optional[np.dtype] = dtype
        self._order = order
        self._format: Optional[Format] = format
        self._itemsize_bits: int = itemsize_bits
        self._var_dim = var_dim
        self._wire_dtype: Optional[np.dtype] = wire_dtype
        self._bitfmt: Optional[BitFormat] = bitfmt
        # Only a 1-D item of nothing but c8 is text (a str); a c8 field of a
        # record stays one byte (bytes), as the codec decodes it.
        self._is_str = format == [("c", 8)] and len(self._shape) == 1
        self._unicode_runs = [] if wire_dtype is None else _unicode_runs(wire_dtype)
        self._chars = (wire_dtype is not None and wire_dtype.kind == "S"
                       and wire_dtype.itemsize == 1 and len(self._shape) == 1)

    @property
    def shape(self) -> Shape:
        """Dimensions, ``None`` for a variable one."""
        return self._shape

    @property
    def dtype(self) -> Optional[np.dtype]:
        """The numpy dtype, or None for a format-described item."""
        return self._dtype

    @property
    def order(self) -> str:
        """Array order of the values on the wire: ``'C'`` or ``'F'``."""
        return self._order

    @property
    def format(self) -> Optional[Format]:
        """The SPEAD format, or None for a numpy-described item."""
        return None if self._format is None else list(self._format)

    @property
    def itemsize_bits(self) -> int:
        """Bits in one element."""
        return self._itemsize_bits

    def is_variable_size(self) -> bool:
        """Whether a dimension is variable."""
        return self._var_dim >= 0

    def dynamic_shape(self, max_elements: int) -> Tuple[int, ...]:
        """The shape with the variable dimension as large as ``max_elements``
        elements allow (0 when another dimension is 0)."""
        if self._var_dim < 0:
            return self._shape  # type: ignore[return-value]  # no None in it
        known = 1
        for dim in self._shape:
            if dim is not None:
                known *= dim
        var = max_elements // known if known else 0
        return tuple(var if dim is None else dim for dim in self._shape)

    def compatible_shape(self, shape: Sequence[int]) -> bool:
        """Whether a value of ``shape`` fits this descriptor."""
        if len(shape) != len(self._shape):
            return False
        for want, got in zip(self._shape, shape):
            if want is not None and want != got:
                return False
        return True

    def _same_descriptor(self, other: "Descriptor") -> bool:
        return (self.id == other.id and self.name == other.name
                and self.description == other.description and self._shape == other._shape
                and self._dtype == other._dtype and self._order == other._order
                and self._format == other._format)

    @classmethod
    def from_raw(cls: "type[_D]", raw_descriptor: RawDescriptor, flavour: Flavour) -> "_D":
        """Build from a received descriptor.

        Under ``BUG_COMPAT_SWAP_ENDIAN`` the dtype of a numpy header is
        byte-swapped, as PySPEAD 0.5.2 sent values in the opposite order.
        """
        name = raw_descriptor.name.decode("ascii")
        description = raw_descriptor.description.decode("ascii")
        if raw_descriptor.numpy_header:
            header = bytes(raw_descriptor.numpy_header).decode("ascii")
            shape, order, dtype = _parse_numpy_header(header)
            if flavour.bug_compat & _BUG_COMPAT_SWAP_ENDIAN:
                dtype = dtype.newbyteorder()
            return cls(raw_descriptor.id, name, description, shape, dtype=dtype, order=order)
        format = [(code if isinstance(code, str) else chr(code), int(bits))
                  for code, bits in raw_descriptor.format]
        shape = tuple(None if dim < 0 else dim for dim in raw_descriptor.shape)
        return cls(raw_descriptor.id, name, description, shape, format=format)

    def to_raw(self, flavour: Optional[Flavour] = None) -> bytes:
        """The descriptor packet for ``flavour`` (see ``encode_raw_descriptor``).

        A numpy-described item sends its dtype as a numpy header and an
        empty format. Raises ``UnicodeEncodeError`` for a non-ASCII name or
        description.
        """
        if flavour is None:
            flavour = Flavour()
        raw = RawDescriptor(self.id, self.name.encode("ascii"),
                            self.description.encode("ascii"),
                            [-1 if dim is None else dim for dim in self._shape])
        if self._dtype is not None:
            dtype = self._dtype
            if flavour.bug_compat & _BUG_COMPAT_SWAP_ENDIAN:
                dtype = dtype.newbyteorder()
            raw.numpy_header = _make_numpy_header(self._shape, dtype, self._order).encode("ascii")
        else:
            raw.format = list(self._format)  # type: ignore[arg-type]  # no dtype: a format
        return encode_raw_descriptor(raw, flavour.heap_address_bits, flavour.bug_compat)

    def __repr__(self) -> str:
        kind = f"dtype={self._dtype!r}, order={self._order!r}" if self._dtype is not None \
            else f"format={self._format!r}"
        return (f"{type(self).__name__}(id={self.id:#x}, name={self.name!r}, "
                f"description={self.description!r}, shape={self._shape!r}, {kind})")


def _value_shape(value: Any, descriptor_shape: Shape) -> Tuple[int, ...]:
    """The shape of nested sequences, read along their first elements."""
    if isinstance(value, np.ndarray):
        return value.shape
    shape = []
    for dim, want in enumerate(descriptor_shape):
        try:
            n = len(value)
        except TypeError:
            raise ValueError(f"value has {dim} dimensions, expected "
                             f"{len(descriptor_shape)}") from None
        shape.append(n)
        if n == 0:
            shape.extend(0 if d is None else d for d in descriptor_shape[dim + 1:])
            break
        value = value[0]
    return tuple(shape)


class Item(Descriptor):
    """A descriptor with a value.

    ``version`` counts the times the value has been set (0 while there is
    no value); an item replacing another in an :class:`ItemGroup` starts
    above the versions of the one it replaces.
    """

    def __init__(self, id: int, name: str, description: str, shape: Iterable[Optional[int]],
                 dtype: Any = None, order: str = "C", format: Optional[Format] = None,
                 value: Any = None) -> None:
        super().__init__(id, name, description, shape, dtype, order, format)
        self._value = None
        self.version = 0
        self._decode = self._make_decoder()
        if value is not None:
            self.value = value

    @property
    def value(self) -> Any:
        """The current value (None until one is set or received)."""
        return self._value

    @value.setter
    def value(self, new_value: Any) -> None:
        if new_value is None:
            raise ValueError("an item's value cannot be set to None")
        self._value = new_value
        self.version += 1

    def _make_decoder(self):
        """A function from a raw item to a value with native byte order.

        For fixed shapes with a numpy equivalent it is a few numpy calls; any
        other case, and any size mismatch, goes through ``_decode_general``.
        """
        wire = self._wire_dtype
        # A weak reference: a bound method here would make the item a
        # reference cycle, and its value (often a view holding a whole
        # received heap) would then live until the cyclic collector ran.
        item_ref = weakref.ref(self)

        def general(raw):
            return item_ref()._decode_general(raw)

        if wire is None or self._var_dim >= 0 or self._unicode_runs:
            return general
        frombuffer = np.frombuffer
        shape = self._shape
        ndim = len(shape)
        count = math.prod(shape)
        order = self._order
        native = None if wire.isnative else wire.newbyteorder("=")

        if self._is_str:
            def decode(raw):
                try:
                    a = frombuffer(raw, wire)
                except ValueError:
                    return general(raw)
                if len(a) != count:
                    return general(raw)
                return a.tobytes().decode("ascii")
        elif ndim == 0:
            if wire.names is None:
                # Indexing gives a native scalar even from non-native data.
                def decode(raw):
                    try:
                        a = frombuffer(raw, wire)
                    except ValueError:
                        return general(raw)
                    if len(a) != 1:
                        return general(raw)
                    return a[0]
            else:
                return general
        elif ndim == 1 and native is None:
            def decode(raw):
                try:
                    a = frombuffer(raw, wire)
                except ValueError:
                    return general(raw)
                if len(a) != count:
                    return general(raw)
                return a
        elif native is None:
            def decode(raw):
                try:
                    return frombuffer(raw, wire).reshape(shape, order=order)
                except ValueError:
                    return general(raw)
        else:
            def decode(raw):
                try:
                    a = frombuffer(raw, wire).reshape(shape, order=order)
                except ValueError:
                    return general(raw)
                return a.astype(native)
        return decode

    def _decode_general(self, raw_item: Any, new_order: str = "=") -> Any:
        """Decode any raw item, checking its size against the descriptor."""
        if new_order not in _BYTE_ORDERS:
            raise ValueError(f"new_order must be one of {_BYTE_ORDERS}, not {new_order!r}")
        data = memoryview(raw_item)
        if data.ndim != 1 or data.itemsize != 1:
            data = data.cast("B")
        n = data.nbytes
        bits = self._itemsize_bits
        shape = self._shape
        if self._var_dim >= 0:
            shape = self.dynamic_shape(n * 8 // bits)
        need = (math.prod(shape) * bits + 7) // 8  # type: ignore[arg-type]  # no None now
        if need != n:
            if need < n and getattr(raw_item, "is_immediate", False):
                # Immediate values are right-aligned in the address field.
                data = data[n - need:]
            else:
                raise ValueError(f"item {self.name!r} (ID {self.id:#x}) has {n} bytes, "
                                 f"but its descriptor implies {need}")
        wire = self._wire_dtype
        if wire is None:
            return self._bitfmt.unpack(data, shape)  # type: ignore[union-attr,arg-type]
        if self._unicode_runs:
            _check_unicode(data, wire, self._unicode_runs, f"item {self.name!r} (ID {self.id:#x})")
        value = np.frombuffer(data, wire).reshape(shape, order=self._order)  # type: ignore[call-overload]
        if new_order == "=":
            if not wire.isnative:
                value = value.astype(wire.newbyteorder("="))
        elif new_order != "|":
            value = value.astype(wire.newbyteorder(new_order))  # type: ignore[arg-type]  # checked
        if self._is_str:
            return value.tobytes().decode("ascii")
        if not shape:
            return value[()]
        return value

    def set_from_raw(self, raw_item: Any, new_order: str = "=") -> None:
        """Set the value from a received raw item.

        ``new_order`` is the byte order of numpy results: ``'='`` native,
        ``'|'`` as on the wire, ``'<'`` or ``'>'``. Raises ``ValueError``
        when the item's size does not match the descriptor.
        """
        if new_order == "=":
            value = self._decode(raw_item)
        else:
            value = self._decode_general(raw_item, new_order)
        self._value = value
        self.version += 1

    def to_buffer(self) -> memoryview:
        """The value's bytes as sent: contiguous in the descriptor's order,
        big-endian for format-described fields, bit-packed for formats
        without a numpy equivalent.

        Raises ``ValueError`` when there is no value or its shape does not
        fit, ``UnicodeEncodeError`` for non-ASCII characters.
        """
        value = self._value
        if value is None:
            raise ValueError(f"item {self.name!r} (ID {self.id:#x}) has no value")
        wire = self._wire_dtype
        if wire is None:
            if self._var_dim >= 0 or isinstance(value, np.ndarray):
                shape = _value_shape(value, self._shape)
                if not self.compatible_shape(shape):
                    raise ValueError(f"value of item {self.name!r} has shape {shape}, "
                                     f"expected {self._shape}")
            else:
                shape = self._shape
            return memoryview(self._bitfmt.pack(value, shape))
        if self._chars and isinstance(value, (str, bytes)):
            if isinstance(value, str):
                value = value.encode("ascii")
            array = np.frombuffer(value, wire)
        else:
            array = np.asarray(value, dtype=wire, order=self._order)
        if array.shape != self._shape and not self.compatible_shape(array.shape):
            raise ValueError(f"value of item {self.name!r} has shape {array.shape}, "
                             f"expected {self._shape}")
        if array.ndim > 1 and self._order == "F":
            flat = array.ravel(order="F")
        else:
            flat = array.reshape(-1)
        return memoryview(flat.view(np.uint8))


class ItemGroup:
    """Items indexed by ID and by name."""

    def __init__(self) -> None:
        self._by_id: Dict[int, Item] = {}
        self._by_name: Dict[str, Item] = {}

    def _add_item(self, item: Item) -> Item:
        """Add ``item``, replacing any item with its ID or name.

        A re-sent identical descriptor keeps the existing item (and its
        value), taking the new item's value if it has one.
        """
        old_by_id = self._by_id.get(item.id)
        old_by_name = self._by_name.get(item.name)
        if old_by_id is not None and old_by_id is old_by_name \
                and old_by_id._same_descriptor(item):
            if item._value is not None:
                old_by_id.value = item._value
            return old_by_id
        version = item.version
        for old in (old_by_id, old_by_name):
            if old is not None:
                log(logging.DEBUG, "replacing item %s (ID %#x) with %s (ID %#x)",
                    old.name, old.id, item.name, item.id, source=id(self))
                version = max(version, old.version + 1)
                del self._by_id[old.id]
                del self._by_name[old.name]
                if old_by_id is old_by_name:
                    break
        item.version = version
        self._by_id[item.id] = item
        self._by_name[item.name] = item
        return item

    def add_item(self, id: Optional[int], name: str, description: str,
                 shape: Iterable[Optional[int]], dtype: Any = None, order: str = "C",
                 format: Optional[Format] = None, value: Any = None) -> Item:
        """Add (or replace) an item and return it.

        With ``id`` None, the smallest ID from 0x1000 up that no item uses
        is chosen.
        """
        if id is None:
            id = _FIRST_USER_ID
            while id in self._by_id:
                id += 1
        item = Item(id, name, description, shape, dtype, order, format, value)
        return self._add_item(item)

    def __getitem__(self, key: Union[int, str]) -> Item:
        if isinstance(key, str):
            return self._by_name[key]
        return self._by_id[key]

    def __contains__(self, key: Union[int, str]) -> bool:
        if isinstance(key, str):
            return key in self._by_name
        return key in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)

    def keys(self) -> KeysView[str]:
        """Item names."""
        return self._by_name.keys()

    def ids(self) -> KeysView[int]:
        """Item IDs."""
        return self._by_id.keys()

    def values(self) -> ValuesView[Item]:
        """The items."""
        return self._by_name.values()

    def items(self) -> ItemsView[str, Item]:
        """(name, item) pairs."""
        return self._by_name.items()

    def update(self, heap: Any, new_order: str = "=") -> Dict[str, Item]:
        """Apply a received heap: its descriptors first, then its values.

        Returns a dict name -> item of the items whose values the heap set.
        Values of IDs without a descriptor, and stream-control IDs, are
        ignored. Raises ``ValueError`` for values of the wrong size or
        malformed numpy headers, ``TypeError`` for numpy headers that need
        Python objects.
        """
        descriptors = heap.get_descriptors()
        if descriptors:
            flavour = heap.flavour
            for raw in descriptors:
                self._add_item(Item.from_raw(raw, flavour))
        updated = {}
        by_id = self._by_id
        if new_order == "=":
            for raw in heap.get_items():
                item_id = raw.id
                item = by_id.get(item_id)
                if item is None or item_id <= _STREAM_CTRL_ID:
                    if item is None and item_id > _STREAM_CTRL_ID:
                        log(logging.DEBUG, "ignoring value for unknown item ID %#x", item_id,
                            source=id(self))
                    continue
                item._value = item._decode(raw)
                item.version += 1
                updated[item.name] = item
        else:
            for raw in heap.get_items():
                item_id = raw.id
                item = by_id.get(item_id)
                if item is None or item_id <= _STREAM_CTRL_ID:
                    continue
                item.set_from_raw(raw, new_order)
                updated[item.name] = item
        return updated
