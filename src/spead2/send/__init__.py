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
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Sequence, Tuple, overload

import spead2 as _spead2
from spead2 import _net
from spead2._args import (as_nonzero_unsigned, as_port, as_str, as_unsigned, bind_arguments,
                          is_integer)
from spead2._flavour import Flavour

from ._config import GroupMode, RateMethod, StreamConfig
from ._ibv import UdpIbvConfig, UdpIbvStream
from ._send import (BytesStream, Heap, HeapReference, HeapReferenceList, PacketGenerator,
                    Stream, _InprocStreamBase, _TcpStreamBase, _UdpStreamBase)

__all__ = [
    "StreamConfig", "RateMethod", "GroupMode", "Heap", "HeapReference", "HeapReferenceList",
    "PacketGenerator", "HeapGenerator", "ItemGroup", "Stream", "BytesStream", "UdpStream",
    "TcpStream", "InprocStream", "UdpIbvConfig", "UdpIbvStream",
]

_DESCRIPTOR_CHOICES = ("stale", "all", "none")


class _SentState:
    """What a HeapGenerator last sent for one item ID."""

    __slots__ = ("item_ref", "version", "descriptor_cnt")

    def __init__(self, item: Any) -> None:
        self.item_ref: Callable[[], Any]
        try:
            self.item_ref = weakref.ref(item)
        except TypeError:
            self.item_ref = lambda item=item: item  # type: ignore[misc]
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
        group: Any = self._item_group if self._item_group is not None else self
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


if TYPE_CHECKING:
    from spead2._items import ItemGroup as _BaseItemGroup
else:
    _BaseItemGroup = getattr(_spead2, "ItemGroup", None)

if _BaseItemGroup is not None:
    class ItemGroup(_BaseItemGroup, HeapGenerator):
        """A :class:`spead2.ItemGroup` that is also its own
        :class:`HeapGenerator`."""

        def __init__(self, descriptor_frequency: Optional[int] = None,
                     flavour: Flavour = Flavour()) -> None:
            _BaseItemGroup.__init__(self)
            HeapGenerator.__init__(self, self, descriptor_frequency, flavour)


def _is_socket(value: Any) -> bool:
    return isinstance(value, _socket.socket)


def _is_endpoint_list(value: Any) -> bool:
    return isinstance(value, (list, tuple))


# The forms of UdpStream, by the names of their arguments after thread_pool.
_UDP_2016_UNICAST = ("hostname", "port", "config", "buffer_size", "socket")
_UDP_2016_MULTICAST_IPV4 = ("hostname", "port", "config", "buffer_size", "ttl",
                            "interface_address")
_UDP_2016_MULTICAST_IPV6 = ("hostname", "port", "config", "buffer_size", "ttl",
                            "interface_index")
_UDP_2016_ALIASES = {"multicast_group": "hostname"}
_UDP_UNICAST = ("endpoints", "config", "buffer_size", "interface_address")
_UDP_MULTICAST = ("endpoints", "config", "buffer_size", "ttl")
_UDP_MULTICAST_IPV4 = ("endpoints", "config", "buffer_size", "ttl", "interface_address")
_UDP_MULTICAST_IPV6 = ("endpoints", "config", "buffer_size", "ttl", "interface_index")
_UDP_SOCKET = ("socket", "endpoints", "config")


def _udp_2016_arguments(args: tuple, kwargs: dict) -> dict:
    """The arguments of a 2016 form (hostname and port), by name, with the
    destination made into a one-pair ``endpoints``.

    A multicast form is chosen by a ``ttl``, ``interface_address`` or
    ``interface_index`` keyword, or an integer fifth argument (the unicast
    form has a socket there); within it, the ``interface_index`` keyword or
    an integer sixth argument chooses the IPv6 form.
    """
    if "interface_address" in kwargs and "interface_index" in kwargs:
        raise TypeError("UdpStream: give interface_address or interface_index, not both")
    multicast = (any(key in kwargs for key in ("ttl", "interface_address", "interface_index"))
                 or (len(args) > 4 and is_integer(args[4])))
    names: Tuple[str, ...]
    if not multicast:
        names = _UDP_2016_UNICAST
    elif "interface_index" in kwargs or (len(args) > 5 and is_integer(args[5])):
        names = _UDP_2016_MULTICAST_IPV6
    else:
        names = _UDP_2016_MULTICAST_IPV4
    required = ("hostname", "port", "ttl") if multicast else ("hostname", "port")
    values = bind_arguments("UdpStream", names, args, kwargs, required, _UDP_2016_ALIASES)
    values["endpoints"] = [(as_str(values.pop("hostname"), "hostname"),
                            as_port(values.pop("port")))]
    if "interface_address" in values:
        values["family"] = _socket.AF_INET
    elif "interface_index" in values:
        values["family"] = _socket.AF_INET6
    return values


def _udp_arguments(args: tuple, kwargs: dict) -> dict:
    """The arguments of whichever :class:`UdpStream` form ``args`` and
    ``kwargs`` are, by name (see the class for the rules)."""
    first = args[0] if args else None
    # a 2016 form has the port second, where today's forms never have an int
    if isinstance(first, (str, bytes)) or (len(args) > 1 and is_integer(args[1])) or any(
            key in kwargs for key in ("hostname", "multicast_group", "port")):
        values = _udp_2016_arguments(args, kwargs)
        values["form"] = "2016"
        return values
    if _is_socket(first) or (not args and "socket" in kwargs):
        values = bind_arguments("UdpStream", _UDP_SOCKET, args, kwargs, ("socket", "endpoints"))
        values["form"] = "socket"
        return values
    if "interface_address" in kwargs and "interface_index" in kwargs:
        raise TypeError("UdpStream: give interface_address or interface_index, not both")
    ttl = "ttl" in kwargs or (len(args) > 3 and is_integer(args[3]))
    names: Tuple[str, ...]
    if not ttl:
        names = _UDP_UNICAST
    elif "interface_index" in kwargs or (len(args) > 4 and is_integer(args[4])):
        names = _UDP_MULTICAST_IPV6
    elif "interface_address" in kwargs or len(args) > 4:
        names = _UDP_MULTICAST_IPV4
    else:
        names = _UDP_MULTICAST
    return bind_arguments("UdpStream", names, args, kwargs, ("endpoints",))


def _numeric(sockaddr: tuple) -> Tuple[str, int, int, int]:
    """``(host, port, flowinfo, scope_id)`` of a resolved address, the
    scope of an IPv6 address travelling as scope_id."""
    if len(sockaddr) == 4:
        return sockaddr[0].split("%")[0], sockaddr[1], sockaddr[2], sockaddr[3]
    return sockaddr[0], sockaddr[1], 0, 0


def _check_ipv4_interface(address: str) -> None:
    """An IPv4 multicast interface: '' (the routes decide) or a name or
    address of IPv4 ("Host not found" if it has no address at all)."""
    if address and _net.resolve(address, 0)[0] != _socket.AF_INET:
        raise ValueError(f"interface address {address!r} is not an IPv4 address")


class UdpStream(_UdpStreamBase):
    """Sends heaps as UDP datagrams, substream i to ``endpoints[i]``.

    Forms (today's; ``endpoints`` is a list of ``(host, port)`` pairs):

    1. ``UdpStream(thread_pool, endpoints, config=StreamConfig(),
       buffer_size=DEFAULT_BUFFER_SIZE, interface_address='')``: a
       non-empty ``interface_address`` is bound as the source address;
    2. ``UdpStream(thread_pool, endpoints, config, buffer_size, ttl)``:
       multicast endpoints;
    3. ``(..., ttl, interface_address)``: IPv4 multicast, sent from the
       interface with that address (``''``: the routes decide);
    4. ``(..., ttl, interface_index)``: IPv6 multicast;
    5. ``UdpStream(thread_pool, socket, endpoints, config=StreamConfig())``:
       an unconnected UDP socket of the endpoints' family, used as it is
       (a duplicate is taken; the caller may close its own).

    After ``buffer_size``, a str is ``interface_address`` and an int is
    ``ttl``; after ``ttl``, a str selects form 3 and an int form 4. The 2016
    forms ``(thread_pool, hostname, port, config, buffer_size,
    socket=None)`` and ``(thread_pool, multicast_group, port, config,
    buffer_size, ttl[, interface_address | interface_index])`` are told
    apart by a str second argument. ``buffer_size=0`` keeps the OS default.
    """

    DEFAULT_BUFFER_SIZE = 524288

    # the forms, for type checkers
    @overload
    def __init__(self, thread_pool: "_spead2.ThreadPool", endpoints: Sequence[Tuple[str, int]],
                 config: Optional[StreamConfig] = None, buffer_size: int = ...,
                 interface_address: str = "") -> None: ...
    @overload
    def __init__(self, thread_pool: "_spead2.ThreadPool", endpoints: Sequence[Tuple[str, int]],
                 config: Optional[StreamConfig], buffer_size: int, ttl: int,
                 interface_address: str = "") -> None: ...
    @overload
    def __init__(self, thread_pool: "_spead2.ThreadPool", endpoints: Sequence[Tuple[str, int]],
                 config: Optional[StreamConfig], buffer_size: int, ttl: int,
                 interface_index: int) -> None: ...
    @overload
    def __init__(self, thread_pool: "_spead2.ThreadPool", endpoints: Sequence[Tuple[str, int]],
                 config: Optional[StreamConfig] = None, buffer_size: int = ..., *, ttl: int,
                 interface_address: str = "") -> None: ...
    @overload
    def __init__(self, thread_pool: "_spead2.ThreadPool", endpoints: Sequence[Tuple[str, int]],
                 config: Optional[StreamConfig] = None, buffer_size: int = ..., *, ttl: int,
                 interface_index: int) -> None: ...
    @overload
    def __init__(self, thread_pool: "_spead2.ThreadPool", socket: _socket.socket,
                 endpoints: Sequence[Tuple[str, int]],
                 config: Optional[StreamConfig] = None) -> None: ...
    @overload
    def __init__(self, thread_pool: "_spead2.ThreadPool", hostname: str, port: int,
                 config: Optional[StreamConfig] = None, buffer_size: int = ...,
                 socket: Optional[_socket.socket] = None) -> None: ...
    @overload
    def __init__(self, thread_pool: "_spead2.ThreadPool", multicast_group: str, port: int,
                 config: Optional[StreamConfig], buffer_size: int, ttl: int,
                 interface_address: str = "") -> None: ...
    @overload
    def __init__(self, thread_pool: "_spead2.ThreadPool", multicast_group: str, port: int,
                 config: Optional[StreamConfig], buffer_size: int, ttl: int,
                 interface_index: int) -> None: ...

    def __init__(self, thread_pool: "_spead2.ThreadPool", *args: Any, **kwargs: Any) -> None:
        values = _udp_arguments(args, kwargs)
        config = values.get("config")
        if config is None:
            config = StreamConfig()
        given = values.get("socket")
        # today's socket form uses the socket as it is; the 2016 one sets
        # its buffer size
        as_given = values.get("form") == "socket"
        sock = _net.adopt_socket(given) if given is not None else None
        try:
            family, endpoints = self._resolve(values, sock)
            if sock is None:
                sock = _net.create_socket(family)
            sock.setblocking(True)
            if not as_given:
                buffer_size = as_unsigned(values.get("buffer_size", self.DEFAULT_BUFFER_SIZE),
                                          "buffer_size")
                _net.set_buffer_size(sock, buffer_size, _net.SEND)
            if "ttl" in values:
                interface_address = values.get("interface_address") or None
                _net.set_multicast_send(sock, values["ttl"], interface_address,
                                        values.get("interface_index"))
            elif values.get("interface_address"):
                host = values["interface_address"]
                _net.bind(sock, _net.resolve(host, 0, family)[1], f"{host}:0")
        except BaseException:
            if sock is not None:
                sock.close()
            raise
        self._open(thread_pool, sock.detach(), family, [_numeric(a) for a in endpoints], config)

    @staticmethod
    def _resolve(values: dict, sock: Optional[_socket.socket]) -> Tuple[int, List[tuple]]:
        """Resolve the endpoints and check them against the form."""
        if "interface_address" in values:
            values["interface_address"] = as_str(values["interface_address"],
                                                 "interface_address")
        if "interface_index" in values:
            values["interface_index"] = as_unsigned(values["interface_index"],
                                                    "interface_index", 32)
        if "ttl" in values:
            values["ttl"] = as_unsigned(values["ttl"], "ttl", 8)
        family = values.get("family", _socket.AF_UNSPEC)
        if sock is not None:
            family = sock.family
        try:
            found, endpoints = _net.resolve_endpoints(values["endpoints"], family)
        except _spead2.SocketError:
            if sock is None:
                raise
            # a name of the other family, rather than one that does not exist
            found, endpoints = _net.resolve_endpoints(values["endpoints"])
        if sock is not None and found != sock.family:
            raise ValueError("the endpoints are not of the socket's address family")
        if "ttl" in values:
            if not all(_net.is_multicast(addr[0]) for addr in endpoints):
                if "interface_address" in values and found == _socket.AF_INET6:
                    raise ValueError("endpoint is not an IPv4 multicast address")
                raise ValueError("endpoint is not a multicast address")
            if "interface_address" in values:
                if found != _socket.AF_INET:
                    raise ValueError("endpoint is not an IPv4 multicast address")
                _check_ipv4_interface(values["interface_address"])
            if "interface_index" in values and found != _socket.AF_INET6:
                raise ValueError("endpoint is not an IPv6 multicast address")
        return found, endpoints


_TCP_CONNECT = ("endpoints", "config", "buffer_size", "interface_address")
_TCP_SOCKET = ("socket", "config")


def _tcp_socket(endpoints: Any, buffer_size: Any, interface_address: Any) -> Tuple[
        _socket.socket, tuple]:
    """A new TCP socket set up for connecting to the one endpoint, and its
    address."""
    endpoints = list(endpoints) if _is_endpoint_list(endpoints) else endpoints
    if _is_endpoint_list(endpoints) and len(endpoints) != 1:
        raise ValueError(f"a TCP stream needs exactly one endpoint, not {len(endpoints)}")
    family, (sockaddr,) = _net.resolve_endpoints(endpoints, socktype=_socket.SOCK_STREAM)
    buffer_size = as_unsigned(buffer_size, "buffer_size")
    interface_address = as_str(interface_address, "interface_address")
    sock = _net.create_socket(family, _socket.SOCK_STREAM)
    try:
        _net.set_buffer_size(sock, buffer_size, _net.SEND)
        if interface_address:
            _net.bind(sock, _net.resolve(interface_address, 0, family, _socket.SOCK_STREAM)[1],
                      f"{interface_address}:0")
    except BaseException:
        sock.close()
        raise
    return sock, sockaddr


class TcpStream(_TcpStreamBase):
    """Sends heaps over a TCP connection, packets back to back.

    Forms: ``TcpStream(thread_pool, endpoints, config=StreamConfig(),
    buffer_size=DEFAULT_BUFFER_SIZE, interface_address='')`` connects to the
    one endpoint (a list of one ``(host, port)`` pair), blocking until it
    is connected (a refused connection raises the ``OSError`` subclass,
    such as ``ConnectionRefusedError``); ``TcpStream(thread_pool, socket,
    config=StreamConfig())`` sends on a connected socket (a duplicate is
    taken).
    """

    DEFAULT_BUFFER_SIZE = 212992

    @overload
    def __init__(self, thread_pool: "_spead2.ThreadPool", endpoints: Sequence[Tuple[str, int]],
                 config: Optional[StreamConfig] = None, buffer_size: int = ...,
                 interface_address: str = "") -> None: ...
    @overload
    def __init__(self, thread_pool: "_spead2.ThreadPool", socket: _socket.socket,
                 config: Optional[StreamConfig] = None) -> None: ...

    def __init__(self, thread_pool: "_spead2.ThreadPool", *args: Any, **kwargs: Any) -> None:
        first = args[0] if args else kwargs.get("socket")
        if _is_socket(first) or "socket" in kwargs:
            values = bind_arguments("TcpStream", _TCP_SOCKET, args, kwargs, ("socket",))
            sock = _net.adopt_socket(values["socket"], _socket.SOCK_STREAM)
        else:
            values = bind_arguments("TcpStream", _TCP_CONNECT, args, kwargs, ("endpoints",))
            sock, sockaddr = _tcp_socket(values["endpoints"],
                                         values.get("buffer_size", self.DEFAULT_BUFFER_SIZE),
                                         values.get("interface_address", ""))
            try:
                # Blocks without the GIL; a signal's handler (KeyboardInterrupt)
                # ends the wait (PEP 475).
                sock.connect(sockaddr)
            except BaseException:
                sock.close()
                raise
        self._open(thread_pool, sock.detach(), values.get("config"))


class InprocStream(_InprocStreamBase):
    """Sends heaps into in-process queues (:class:`spead2.InprocQueue`),
    substream i into ``queues[i]``; each packet is copied in.  A single
    queue may stand for a list of one."""

    def __init__(self, thread_pool: "_spead2.ThreadPool", queues: Any,
                 config: Optional[StreamConfig] = None) -> None:
        if isinstance(queues, _spead2.InprocQueue):
            queues = [queues]
        if not _is_endpoint_list(queues):
            raise TypeError(f"queues must be a list of spead2.InprocQueue, not "
                            f"{type(queues).__name__}")
        queues = list(queues)
        if not queues:
            raise ValueError("queues is empty")
        for queue in queues:
            if not isinstance(queue, _spead2.InprocQueue):
                raise TypeError(f"queues must hold spead2.InprocQueue objects, not "
                                f"{type(queue).__name__}")
        self._open(thread_pool, queues, config)

    @property
    def queue(self) -> "_spead2.InprocQueue":
        """The queue, when there is only one (``RuntimeError`` otherwise)."""
        queues = self.queues
        if len(queues) != 1:
            raise RuntimeError("the stream has several queues: use .queues")
        return queues[0]

