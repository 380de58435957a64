"""SPEAD (Streaming Protocol for Exchanging Astronomical Data) for Python.

A compiled implementation of the spead2 Python API: programs written for the
documented ``spead2`` interface run unchanged.
"""

# names re-exported as ``X as X`` so that type checkers see them as public
from ._errors import FilterError as FilterError, PortRangeError as PortRangeError
from ._errors import RangeError as RangeError, SocketError as SocketError
from ._logging import install as _install_rate_limit
from ._core import Buffer as Buffer, InprocQueue as InprocQueue
from ._core import MemoryAllocator as MemoryAllocator, MemoryPool as MemoryPool
from ._core import MmapAllocator as MmapAllocator, ThreadPool as ThreadPool
from ._core import (  # the constants are defined in csrc/wire.h
    NULL_ID as NULL_ID,
    HEAP_CNT_ID as HEAP_CNT_ID,
    HEAP_LENGTH_ID as HEAP_LENGTH_ID,
    PAYLOAD_OFFSET_ID as PAYLOAD_OFFSET_ID,
    PAYLOAD_LENGTH_ID as PAYLOAD_LENGTH_ID,
    DESCRIPTOR_ID as DESCRIPTOR_ID,
    STREAM_CTRL_ID as STREAM_CTRL_ID,
    DESCRIPTOR_NAME_ID as DESCRIPTOR_NAME_ID,
    DESCRIPTOR_DESCRIPTION_ID as DESCRIPTOR_DESCRIPTION_ID,
    DESCRIPTOR_SHAPE_ID as DESCRIPTOR_SHAPE_ID,
    DESCRIPTOR_FORMAT_ID as DESCRIPTOR_FORMAT_ID,
    DESCRIPTOR_ID_ID as DESCRIPTOR_ID_ID,
    DESCRIPTOR_DTYPE_ID as DESCRIPTOR_DTYPE_ID,
    CTRL_STREAM_START as CTRL_STREAM_START,
    CTRL_DESCRIPTOR_REISSUE as CTRL_DESCRIPTOR_REISSUE,
    CTRL_STREAM_STOP as CTRL_STREAM_STOP,
    CTRL_DESCRIPTOR_UPDATE as CTRL_DESCRIPTOR_UPDATE,
    BUG_COMPAT_DESCRIPTOR_WIDTHS as BUG_COMPAT_DESCRIPTOR_WIDTHS,
    BUG_COMPAT_SHAPE_BIT_1 as BUG_COMPAT_SHAPE_BIT_1,
    BUG_COMPAT_SWAP_ENDIAN as BUG_COMPAT_SWAP_ENDIAN,
    BUG_COMPAT_PYSPEAD_0_5_2 as BUG_COMPAT_PYSPEAD_0_5_2,
    MEMCPY_STD as MEMCPY_STD,
    MEMCPY_NONTEMPORAL as MEMCPY_NONTEMPORAL,
)
from ._flavour import Flavour as Flavour
from ._ibv import IbvContext as IbvContext, IbvUnavailable as IbvUnavailable
from ._items import Descriptor as Descriptor, Item as Item, ItemGroup as ItemGroup

__version__ = "0.1.0"

# a NullHandler, and at most 32 records per second per source (see spead2._logging)
_install_rate_limit()


class Stopped(Exception):
    """The stream has been stopped and every queued heap has been consumed."""


class Full(Exception):
    """No room: ``ChunkRingbuffer.put_nowait`` on a full ring, or
    ``add_free_chunk`` when the free ring is full."""


class Empty(Exception):
    """No heap is ready (raised by ``get_nowait``)."""


def parse_range_list(ranges: str) -> "list[int]":
    """Expand a comma-separated list of numbers and ``a-b`` ranges.

    ``'100,4-6,8'`` gives ``[100, 4, 5, 6, 8]``; ``''`` gives ``[]``.
    """
    if not ranges:
        return []
    out: "list[int]" = []
    for part in ranges.split(","):
        part = part.strip()
        if "-" in part[1:]:
            pos = part.index("-", 1)
            start, end = int(part[:pos]), int(part[pos + 1:])
            if end < start:
                raise ValueError(f"range {part!r} is empty")
            out.extend(range(start, end + 1))
        else:
            out.append(int(part))
    return out
