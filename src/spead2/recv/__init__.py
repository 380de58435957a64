"""Receiving SPEAD streams: :class:`Stream` assembles heaps from transports.

Both API generations are accepted: today's ``Stream(thread_pool,
StreamConfig(...), RingStreamConfig(...))`` and the 2016 ``Stream(thread_pool,
bug_compat, max_heaps, ring_heaps)``.
"""

import abc
import collections.abc

DEFAULT_UDP_MAX_SIZE = 9200
DEFAULT_UDP_BUFFER_SIZE = 8388608

from ._recv import (  # noqa: E402
    DEFAULT_MAX_HEAP_SIZE, Heap, IncompleteHeap, RawItem, Stream, UdpSocketError)
from ._config import (  # noqa: E402
    ChunkStreamConfig, ChunkStreamGroupConfig, RingStreamConfig, StreamConfig, StreamStatConfig,
    StreamStats)
from ._chunks import (  # noqa: E402
    Chunk, ChunkRingbuffer, ChunkRingStream, ChunkStreamGroupMember, ChunkStreamRingGroup)
from ._placement import ChunkPlacement  # noqa: E402
from ._ibv import UdpIbvConfig  # noqa: E402
from . import stream_stat_indices  # noqa: E402

class ChunkRingPair(abc.ABC):
    """What chunk ring streams and groups share: ``data_ringbuffer``,
    ``free_ringbuffer`` and ``add_free_chunk``."""


ChunkRingPair.register(ChunkRingStream)
ChunkRingPair.register(ChunkStreamRingGroup)
collections.abc.Sequence.register(ChunkStreamRingGroup)

__all__ = ["DEFAULT_UDP_MAX_SIZE", "DEFAULT_UDP_BUFFER_SIZE", "DEFAULT_MAX_HEAP_SIZE", "Heap",
           "IncompleteHeap", "RawItem", "Stream", "StreamConfig", "RingStreamConfig",
           "StreamStatConfig", "StreamStats", "UdpSocketError", "stream_stat_indices", "Chunk",
           "ChunkRingbuffer", "ChunkRingPair", "ChunkRingStream", "ChunkStreamConfig",
           "ChunkStreamGroupConfig", "ChunkPlacement", "ChunkStreamRingGroup",
           "ChunkStreamGroupMember", "UdpIbvConfig"]
