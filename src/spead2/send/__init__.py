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

import ipaddress
import logging
import os
import socket as _socket
import sys
import weakref
from typing import Any, Optional

import spead2 as _spead2
from spead2._args import as_nonzero_unsigned
from spead2._flavour import Flavour

from ._send import BytesStream, Heap, PacketGenerator, StreamConfig, _UdpStreamBase

__all__ = [
    "StreamConfig", "Heap", "PacketGenerator", "HeapGenerator", "ItemGroup",
    "BytesStream", "UdpStream",
]

_logger = logging.getLogger("spead2")

_DESCRIPTOR_CHOICES = ("stale", "all", "none")


from spead2._errors import SocketError as _SocketError


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


def _check_port(port: Any) -> int:
    if isinstance(port, bool) or not hasattr(port, "__index__"):
        raise TypeError(f"port must be an integer, not {type(port).__name__}")
    port = port.__index__()
    if not 0 <= port <= 65535:
        raise OverflowError(f"port {port} is out of range (0-65535)")
    return port


def _resolve(host: str, port: int, family: int) -> tuple:
    """(family, sockaddr) of the first UDP address for ``host``."""
    try:
        infos = _socket.getaddrinfo(host, port, family, _socket.SOCK_DGRAM)
    except (OSError, UnicodeError) as exc:
        errno = getattr(exc, "errno", None)
        raise _SocketError(errno, f"cannot resolve {host!r}: {exc}") from exc
    if not infos:
        raise _SocketError(None, f"cannot resolve {host!r}")
    return infos[0][0], infos[0][4]


def _set_buffer_size(sock: _socket.socket, buffer_size: int) -> None:
    if buffer_size == 0:
        return
    try:
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDBUF, buffer_size)
        actual = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_SNDBUF)
    except OSError as exc:
        _logger.warning("could not set socket send buffer to %d bytes: %s", buffer_size, exc)
        return
    if sys.platform.startswith("linux"):
        actual //= 2  # Linux reports twice the usable size
    if actual < buffer_size:
        _logger.warning(
            "requested socket send buffer of %d bytes but only got %d: "
            "increase net.core.wmem_max", buffer_size, actual)


_UDP_POSITIONAL = ("hostname", "port", "config", "buffer_size", "_arg5", "_arg6")
_UDP_KEYWORDS = {
    "hostname": "hostname", "multicast_group": "hostname", "port": "port",
    "config": "config", "buffer_size": "buffer_size", "socket": "socket", "ttl": "ttl",
    "interface_address": "interface_address", "interface_index": "interface_index",
}


def _parse_udp_args(args: tuple, kwargs: dict) -> dict:
    """Sort the arguments of the unicast and multicast UdpStream forms."""
    if len(args) > len(_UDP_POSITIONAL):
        raise TypeError(f"UdpStream takes at most {len(_UDP_POSITIONAL) + 1} positional "
                        f"arguments ({len(args) + 1} given)")
    values: "dict[str, Any]" = {}
    for name, value in zip(_UDP_POSITIONAL, args):
        if name == "_arg5":
            if isinstance(value, int) and not isinstance(value, bool):
                name = "ttl"
            else:
                name = "socket"
        elif name == "_arg6":
            if "ttl" not in values:
                raise TypeError("UdpStream: interface given without ttl")
            name = "interface_address" if isinstance(value, str) else "interface_index"
        values[name] = value
    for key, value in kwargs.items():
        name = _UDP_KEYWORDS.get(key)
        if name is None:
            raise TypeError(f"UdpStream got an unexpected keyword argument {key!r}")
        if name in values:
            raise TypeError(f"UdpStream got multiple values for argument {key!r}")
        values[name] = value
    for required in ("hostname", "port"):
        if required not in values:
            raise TypeError(f"UdpStream missing required argument {required!r}")
    if "socket" in values and any(k in values for k in ("ttl", "interface_address",
                                                        "interface_index")):
        raise TypeError("UdpStream: socket cannot be combined with multicast options")
    if "interface_address" in values and "interface_index" in values:
        raise TypeError("UdpStream: give interface_address or interface_index, not both")
    if ("interface_address" in values or "interface_index" in values) and "ttl" not in values:
        raise TypeError("UdpStream: a multicast interface requires ttl")
    return values


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
        values = _parse_udp_args(args, kwargs)
        host = values["hostname"]
        if isinstance(host, bytes):
            host = host.decode()
        if not isinstance(host, str):
            raise TypeError("hostname must be a string")
        port = _check_port(values["port"])
        config = values.get("config")
        if config is None:
            config = StreamConfig()
        buffer_size = values.get("buffer_size", self.DEFAULT_BUFFER_SIZE)
        if isinstance(buffer_size, bool) or not hasattr(buffer_size, "__index__"):
            raise TypeError("buffer_size must be an integer")
        buffer_size = buffer_size.__index__()
        if buffer_size < 0:
            raise ValueError("buffer_size must be non-negative")
        given_socket = values.get("socket")
        if given_socket is not None:
            if not isinstance(given_socket, _socket.socket):
                raise TypeError(f"socket must be a socket.socket, not "
                                f"{type(given_socket).__name__}")
            if given_socket.fileno() < 0:
                raise _SocketError(9, "cannot use the given socket: it is closed")
            if given_socket.type != _socket.SOCK_DGRAM:
                raise ValueError(f"socket must be a UDP (SOCK_DGRAM) socket, not "
                                 f"{given_socket.type!r}")
        multicast = "ttl" in values
        ttl = values.get("ttl")

        family = _socket.AF_UNSPEC
        if "interface_address" in values:
            family = _socket.AF_INET
        elif "interface_index" in values:
            family = _socket.AF_INET6
        if given_socket is not None:
            family = given_socket.family
        family, sockaddr = _resolve(host, port, family)
        if multicast:
            if not ipaddress.ip_address(sockaddr[0].split("%")[0]).is_multicast:
                raise ValueError(f"{host} is not a multicast address")
            ttl = int(ttl)
            if not 0 <= ttl <= 255:
                raise ValueError(f"ttl {ttl} is out of range (0-255)")

        if given_socket is not None:
            sock = _socket.socket(fileno=os.dup(given_socket.fileno()))
        else:
            try:
                sock = _socket.socket(family, _socket.SOCK_DGRAM)
            except OSError as exc:
                raise _SocketError(exc.errno, f"cannot create socket: {exc.strerror}") from exc
        try:
            sock.setblocking(True)
            _set_buffer_size(sock, buffer_size)
            try:
                if multicast and family == _socket.AF_INET:
                    sock.setsockopt(_socket.IPPROTO_IP, _socket.IP_MULTICAST_TTL, ttl)
                    if "interface_address" in values:
                        _, ifaddr = _resolve(values["interface_address"], 0, _socket.AF_INET)
                        sock.setsockopt(_socket.IPPROTO_IP, _socket.IP_MULTICAST_IF,
                                        _socket.inet_aton(ifaddr[0]))
                elif multicast:
                    sock.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_MULTICAST_HOPS, ttl)
                    if "interface_index" in values:
                        sock.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_MULTICAST_IF,
                                        int(values["interface_index"]))
            except OSError as exc:
                if isinstance(exc, _SocketError):
                    raise
                raise _SocketError(exc.errno, f"cannot configure multicast: {exc.strerror}") \
                    from exc
        except BaseException:
            sock.close()
            raise
        flowinfo = sockaddr[2] if family == _socket.AF_INET6 else 0
        scope_id = sockaddr[3] if family == _socket.AF_INET6 else 0
        fd = sock.detach()
        self._open(thread_pool, fd, family, sockaddr[0].split("%")[0], sockaddr[1], flowinfo,
                   scope_id, config)
