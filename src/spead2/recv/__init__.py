"""Receiving SPEAD streams: :class:`Stream` assembles heaps from transports."""

DEFAULT_UDP_MAX_SIZE = 9200
DEFAULT_UDP_BUFFER_SIZE = 8388608

from ._recv import (  # noqa: E402
    DEFAULT_MAX_HEAP_SIZE, Heap, IncompleteHeap, RawItem, Stream, StreamStats, UdpSocketError)

__all__ = ["DEFAULT_UDP_MAX_SIZE", "DEFAULT_UDP_BUFFER_SIZE", "DEFAULT_MAX_HEAP_SIZE", "Heap",
           "IncompleteHeap", "RawItem", "Stream", "StreamStats", "UdpSocketError"]
