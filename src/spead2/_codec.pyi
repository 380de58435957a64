# Type stubs for the compiled module spead2._codec (see _codec.pyx).
from typing_extensions import disjoint_base
from collections.abc import Iterable, Sequence
from typing import Any

from typing_extensions import Buffer as _BufferLike

@disjoint_base
class RawDescriptor:
    id: int
    name: bytes
    description: bytes
    shape: list[int]
    format: list[tuple[str, int]]
    numpy_header: bytes
    def __init__(self, id: int = 0, name: bytes = b"", description: bytes = b"",
                 shape: Iterable[int | None] = (), format: Iterable[tuple[str, int]] = (),
                 numpy_header: bytes = b"") -> None: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def _key(self) -> tuple[Any, ...]: ...

def decode_raw_descriptor(data: _BufferLike, bug_compat: int = 0) -> RawDescriptor: ...
def encode_raw_descriptor(raw: RawDescriptor, heap_address_bits: int = 40,
                          bug_compat: int = 0) -> bytes: ...

@disjoint_base
class BitFormat:
    def __init__(self, format: Iterable[tuple[str, int]]) -> None: ...
    @property
    def itemsize_bits(self) -> int: ...
    @property
    def format(self) -> tuple[tuple[str, int], ...]: ...
    def unpack(self, data: _BufferLike, shape: Sequence[int]) -> Any: ...
    def pack(self, value: Any, shape: Sequence[int]) -> bytes: ...

_MAX_DIMS: int
_MAX_EMPTY_LISTS: int
