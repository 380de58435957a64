"""SPEAD (Streaming Protocol for Exchanging Astronomical Data) for Python.

A compiled implementation of the spead2 Python API: programs written for the
documented ``spead2`` interface run unchanged.
"""

import logging as _logging

from ._errors import SocketError
from ._core import Buffer, MemoryAllocator, MemoryPool, MmapAllocator, ThreadPool
from ._flavour import Flavour
from ._items import Descriptor, Item, ItemGroup

__version__ = "0.1.0"

_logging.getLogger("spead2").addHandler(_logging.NullHandler())

NULL_ID = 0x00
HEAP_CNT_ID = 0x01
HEAP_LENGTH_ID = 0x02
PAYLOAD_OFFSET_ID = 0x03
PAYLOAD_LENGTH_ID = 0x04
DESCRIPTOR_ID = 0x05
STREAM_CTRL_ID = 0x06
DESCRIPTOR_NAME_ID = 0x10
DESCRIPTOR_DESCRIPTION_ID = 0x11
DESCRIPTOR_SHAPE_ID = 0x12
DESCRIPTOR_FORMAT_ID = 0x13
DESCRIPTOR_ID_ID = 0x14
DESCRIPTOR_DTYPE_ID = 0x15

CTRL_STREAM_START = 0
CTRL_DESCRIPTOR_REISSUE = 1
CTRL_STREAM_STOP = 2
CTRL_DESCRIPTOR_UPDATE = 3

BUG_COMPAT_DESCRIPTOR_WIDTHS = 1
BUG_COMPAT_SHAPE_BIT_1 = 2
BUG_COMPAT_SWAP_ENDIAN = 4
BUG_COMPAT_PYSPEAD_0_5_2 = 7

MEMCPY_STD = 0
MEMCPY_NONTEMPORAL = 1


class Stopped(Exception):
    """The stream has been stopped and every queued heap has been consumed."""


class Empty(Exception):
    """No heap is ready (raised by ``get_nowait``)."""


def parse_range_list(ranges: str) -> "list[int]":
    """Expand a comma-separated list of numbers and ``a-b`` ranges.

    ``'100,4-6,8'`` gives ``[100, 4, 5, 6, 8]``; ``''`` gives ``[]``.
    """
    if not ranges:
        return []
    out = []
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
