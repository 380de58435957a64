"""Sending SPEAD streams.

Heaps are built in Python (:class:`Heap`, usually via :class:`HeapGenerator`
or :class:`ItemGroup`), then packetised and written by compiled code without
the GIL: :class:`BytesStream` into memory, :class:`UdpStream` over UDP.

Packet layout (what :class:`PacketGenerator` yields and streams send):

- ``max_packet_size`` is rounded down to a multiple of 8 (at least 56);
  every packet starts with the header and the HEAP_CNT, HEAP_LENGTH,
  PAYLOAD_OFFSET and PAYLOAD_LENGTH immediates;
- the heap's item pointers (descriptors first, then items, each in the
  order added) fill the first packets, leaving at least 8 bytes of each for
  payload; the payload fills the rest of every packet;
- if the payload could not give each pointer-carrying packet 8 bytes (1 for
  the last), a NULL_ID pointer addressing the end of the item data is added
  and the heap is padded with zero bytes to that size; a heap with no
  payload thus carries one zero byte;
- heap counters are numbered 1, 2, 3... per stream, modulo the flavour's
  address width.

Over UDP, runs of equal-sized packets are handed to the kernel as one
segmentation-offload send where the kernel supports it; receivers see the
same datagrams either way.
"""

import socket as _socket
import weakref
from typing import Any, Optional

import spead2 as _spead2
from spead2 import _net
from spead2._args import (as_nonzero_unsigned, as_port, as_str, as_unsigned, bind_arguments,
                          is_integer)
from spead2._flavour import Flavour

from ._send import BytesStream, Heap, PacketGenerator, StreamConfig, _UdpStreamBase

__all__ = [
    "StreamConfig", "Heap", "PacketGenerator", "HeapGenerator", "ItemGroup",
    "BytesStream", "UdpStream",
]

_DESCRIPTOR_CHOICES = ("stale", "all", "none")


class _SentState:
    """What a HeapGenerator last sent for one item ID."""

    __slots__ = ("item_ref", "version", "descriptor_cnt")

    def __init__(self, item: Any) -> None:
        try:
            self.item_ref = weakref.ref(item)
        except TypeError:
            self.item_ref = lambda item=item: item
        self.version: Optional[int] = None
        self.descriptor_cnt: Optional[int] = None


class HeapGenerator:
    """Builds heaps holding what changed in an item group since the last heap.

    A descriptor is stale until it has been sent, again whenever its item is
    replaced, and (with ``descriptor_frequency`` N) once N heaps have been
    generated since it was last sent.  A value is stale when the item's
    ``version`` differs from the one last sent.
    """

    def __init__(self, item_group: Any, descriptor_frequency: Optional[int] = None,
                 flavour: Flavour = Flavour()) -> None:
        if descriptor_frequency is not None:
            descriptor_frequency = as_nonzero_unsigned(descriptor_frequency,
                                                       "descriptor_frequency")
        # An ItemGroup that is its own generator is not stored, to avoid a cycle.
        self._item_group = item_group if item_group is not self else None
        self._descriptor_frequency = descriptor_frequency
        self._flavour = flavour
        self._sent: "dict[int, _SentState]" = {}
        self._heap_index = 0

    def _state(self, item: Any) -> _SentState:
        state = self._sent.get(item.id)
        if state is None or state.item_ref() is not item:
            state = _SentState(item)
            self._sent[item.id] = state
        return state

    def add_to_heap(self, heap: Heap, descriptors: str = "stale", data: str = "stale") -> Heap:
        """Add descriptors and values to ``heap`` and return it.

        ``descriptors`` and ``data`` are each ``'stale'`` (only what changed
        since it was last sent), ``'all'`` or ``'none'``.
        """
        if descriptors not in _DESCRIPTOR_CHOICES:
            raise ValueError(
                f"descriptors must be one of {_DESCRIPTOR_CHOICES}, not {descriptors!r}")
        if data not in _DESCRIPTOR_CHOICES:
            raise ValueError(f"data must be one of {_DESCRIPTOR_CHOICES}, not {data!r}")
        group = self._item_group if self._item_group is not None else self
        freq = self._descriptor_frequency
        index = self._heap_index
        for item in group.values():
            state = self._state(item)
            if descriptors == "all" or (descriptors == "stale" and (
                    state.descriptor_cnt is None
                    or (freq is not None and index - state.descriptor_cnt >= freq))):
                heap.add_descriptor(item)
                state.descriptor_cnt = index
            if data != "none" and getattr(item, "value", None) is not None:
                if data == "all" or state.version != item.version:
                    heap.add_item(item)
                    state.version = item.version
        self._heap_index = index + 1
        return heap

    def get_heap(self, descriptors: str = "stale", data: str = "stale") -> Heap:
        """A new heap from :meth:`add_to_heap`."""
        return self.add_to_heap(Heap(self._flavour), descriptors, data)

    def get_start(self) -> Heap:
        """A heap holding only a start-of-stream marker."""
        heap = Heap(self._flavour)
        heap.add_start()
        return heap

    def get_end(self) -> Heap:
        """A heap holding only an end-of-stream marker."""
        heap = Heap(self._flavour)
        heap.add_end()
        return heap


_BaseItemGroup = getattr(_spead2, "ItemGroup", None)

if _BaseItemGroup is not None:
    class ItemGroup(_BaseItemGroup, HeapGenerator):
        """A :class:`spead2.ItemGroup` that is also its own
        :class:`HeapGenerator`."""

        def __init__(self, descriptor_frequency: Optional[int] = None,
                     flavour: Flavour = Flavour()) -> None:
            _BaseItemGroup.__init__(self)
            HeapGenerator.__init__(self, self, descriptor_frequency, flavour)


_UDP_UNICAST = ("hostname", "port", "config", "buffer_size", "socket")
_UDP_MULTICAST_IPV4 = ("hostname", "port", "config", "buffer_size", "ttl", "interface_address")
_UDP_MULTICAST_IPV6 = ("hostname", "port", "config", "buffer_size", "ttl", "interface_index")
_UDP_ALIASES = {"multicast_group": "hostname"}


def _udp_arguments(args: tuple, kwargs: dict) -> dict:
    """The arguments of a :class:`UdpStream` form, by name.

    A multicast form is chosen by a ``ttl``, ``interface_address`` or
    ``interface_index`` keyword, or an integer fifth argument (the unicast
    form has a socket there); within it, the ``interface_index`` keyword or
    an integer sixth argument chooses the IPv6 form.
    """
    if "interface_address" in kwargs and "interface_index" in kwargs:
        raise TypeError("UdpStream: give interface_address or interface_index, not both")
    multicast = (any(key in kwargs for key in ("ttl", "interface_address", "interface_index"))
                 or (len(args) > 4 and is_integer(args[4])))
    if not multicast:
        names = _UDP_UNICAST
    elif "interface_index" in kwargs or (len(args) > 5 and is_integer(args[5])):
        names = _UDP_MULTICAST_IPV6
    else:
        names = _UDP_MULTICAST_IPV4
    required = ("hostname", "port", "ttl") if multicast else ("hostname", "port")
    return bind_arguments("UdpStream", names, args, kwargs, required, _UDP_ALIASES)


class UdpStream(_UdpStreamBase):
    """Sends heaps as UDP datagrams.

    Forms:

    - ``UdpStream(thread_pool, hostname, port, config=StreamConfig(),
      buffer_size=524288, socket=None)``
    - ``UdpStream(thread_pool, multicast_group, port, config, buffer_size, ttl)``
    - ``UdpStream(thread_pool, multicast_group, port, config, buffer_size, ttl,
      interface_address)`` (IPv4)
    - ``UdpStream(thread_pool, multicast_group, port, config, buffer_size, ttl,
      interface_index)`` (IPv6)

    A given ``socket`` is duplicated; the caller may close its own copy.
    :meth:`send_heap` blocks until the heap has been sent.
    """

    DEFAULT_BUFFER_SIZE = 524288

    def __init__(self, thread_pool: "_spead2.ThreadPool", *args: Any, **kwargs: Any) -> None:
        values = _udp_arguments(args, kwargs)
        host = as_str(values["hostname"], "hostname")
        port = as_port(values["port"])
        config = values.get("config")
        if config is None:
            config = StreamConfig()
        buffer_size = as_unsigned(values.get("buffer_size", self.DEFAULT_BUFFER_SIZE),
                                  "buffer_size")
        multicast = "ttl" in values
        family = _socket.AF_UNSPEC
        if "interface_address" in values:
            values["interface_address"] = as_str(values["interface_address"],
                                                 "interface_address")
            family = _socket.AF_INET
        elif "interface_index" in values:
            family = _socket.AF_INET6
        given = values.get("socket")
        sock = _net.adopt_socket(given) if given is not None else None
        try:
            if sock is not None:
                family = sock.family
            family, sockaddr = _net.resolve(host, port, family)
            if multicast and not _net.is_multicast(sockaddr[0]):
                raise ValueError(f"hostname {host!r} is not a multicast address")
            if sock is None:
                sock = _net.create_socket(family)
            sock.setblocking(True)
            _net.set_buffer_size(sock, buffer_size, _net.SEND)
            if multicast:
                _net.set_multicast_send(sock, values["ttl"], values.get("interface_address"),
                                        values.get("interface_index"))
        except BaseException:
            if sock is not None:
                sock.close()
            raise
        flowinfo = sockaddr[2] if family == _socket.AF_INET6 else 0
        scope_id = sockaddr[3] if family == _socket.AF_INET6 else 0
        fd = sock.detach()
        self._open(thread_pool, fd, family, sockaddr[0].split("%")[0], sockaddr[1], flowinfo,
                   scope_id, config)
