# Type stubs for the compiled module spead2._core (see _core.pyx).
from typing_extensions import disjoint_base
from collections.abc import Sequence
from typing import overload

from typing_extensions import Self

from typing_extensions import Buffer as _BufferLike

@disjoint_base
class ThreadPool:
    def __new__(cls, threads: int = 1, affinity: Sequence[int] = ()) -> Self: ...
    @property
    def num_threads(self) -> int: ...
    @property
    def stopped(self) -> bool: ...
    def stop(self) -> None: ...
    @staticmethod
    def set_affinity(core: int) -> None: ...

@disjoint_base
class MemoryAllocator:
    def __init__(self) -> None: ...
    def _allocate(self, size: int) -> Buffer: ...

@disjoint_base
class Buffer:
    @property
    def size(self) -> int: ...
    def __len__(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __release_buffer__(self, buffer: memoryview, /) -> None: ...

@disjoint_base
class MmapAllocator(MemoryAllocator):
    def __init__(self, flags: int = 0, prefer_huge: bool = False) -> None: ...
    @property
    def prefer_huge(self) -> bool: ...

@disjoint_base
class MemoryPool(MemoryAllocator):
    @overload
    def __init__(self, thread_pool: ThreadPool, lower: int, upper: int, max_free: int,
                 initial: int, low_water: int, allocator: MemoryAllocator | None = None) -> None: ...
    @overload
    def __init__(self, lower: int, upper: int, max_free: int, initial: int,
                 allocator: MemoryAllocator | None = None) -> None: ...
    @property
    def lower(self) -> int: ...
    @property
    def upper(self) -> int: ...
    @property
    def max_free(self) -> int: ...
    @property
    def initial(self) -> int: ...
    @property
    def warn_on_empty(self) -> bool: ...
    @warn_on_empty.setter
    def warn_on_empty(self, value: bool) -> None: ...
    @property
    def low_water(self) -> int: ...
    @property
    def free_buffers(self) -> int: ...
    @property
    def refills(self) -> int: ...

@disjoint_base
class InprocQueue:
    def __init__(self) -> None: ...
    def add_packet(self, packet: _BufferLike) -> None: ...
    def stop(self) -> None: ...
    def __len__(self) -> int: ...

def _selftest_stop_pool_from_worker(threads: int = 1, timeout: float = 10.0) -> None: ...

NULL_ID: int
HEAP_CNT_ID: int
HEAP_LENGTH_ID: int
PAYLOAD_OFFSET_ID: int
PAYLOAD_LENGTH_ID: int
DESCRIPTOR_ID: int
STREAM_CTRL_ID: int
DESCRIPTOR_NAME_ID: int
DESCRIPTOR_DESCRIPTION_ID: int
DESCRIPTOR_SHAPE_ID: int
DESCRIPTOR_FORMAT_ID: int
DESCRIPTOR_ID_ID: int
DESCRIPTOR_DTYPE_ID: int
CTRL_STREAM_START: int
CTRL_DESCRIPTOR_REISSUE: int
CTRL_STREAM_STOP: int
CTRL_DESCRIPTOR_UPDATE: int
BUG_COMPAT_DESCRIPTOR_WIDTHS: int
BUG_COMPAT_SHAPE_BIT_1: int
BUG_COMPAT_SWAP_ENDIAN: int
BUG_COMPAT_PYSPEAD_0_5_2: int
MEMCPY_STD: int
MEMCPY_NONTEMPORAL: int
