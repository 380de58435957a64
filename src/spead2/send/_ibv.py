"""``UdpIbvConfig`` and ``UdpIbvStream``: the names of spead2's ibverbs
sender, which check their arguments as the reference does and then fail
with :class:`spead2._ibv.IbvUnavailable`, this implementation having no
ibverbs support."""

from typing import Any, List

import spead2 as _spead2

from .. import _net
from .._args import as_str, as_unsigned, bind_arguments
from .._config import Config, Option
from .._ibv import check_interface, comp_vector, endpoints, max_poll, no_device, \
    zero_means
from ._config import StreamConfig
from ._send import Stream, _buffer_extent

__all__ = ["UdpIbvConfig", "UdpIbvStream"]


def _memory_regions(value: Any, name: str) -> list:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name} must be a list of buffers, not {type(value).__name__}")
    regions = list(value)
    for region in regions:
        _buffer_extent(region)   # TypeError for anything but a contiguous buffer
    return regions


class UdpIbvConfig(Config):
    """Where and how a :class:`UdpIbvStream` sends: ``endpoints`` (IPv4
    multicast ``(host, port)`` pairs), ``interface_address`` (the IPv4
    address of the interface), ``buffer_size`` (0: the default),
    ``ttl``, ``comp_vector``, ``max_poll`` and ``memory_regions`` (buffers
    heaps will be sent from)."""

    DEFAULT_BUFFER_SIZE = 512 * 1024
    DEFAULT_MAX_POLL = 10

    __slots__ = ("_endpoints", "_interface_address", "_buffer_size", "_ttl", "_comp_vector",
                 "_max_poll", "_memory_regions")

    def _set_defaults(self) -> None:
        self._endpoints: List[tuple] = []
        self._interface_address = ""
        self._buffer_size = self.DEFAULT_BUFFER_SIZE
        self._ttl = 1
        self._comp_vector = 0
        self._max_poll = self.DEFAULT_MAX_POLL
        self._memory_regions: list = []

    endpoints = Option(endpoints, "Destinations, one per substream.")
    interface_address = Option(as_str, "IPv4 address of the interface to send from.")
    buffer_size = Option(zero_means(DEFAULT_BUFFER_SIZE), "Bytes of packet buffer (0: the "
                                                          "default).")
    ttl = Option(lambda value, name: as_unsigned(value, name, 8), "Multicast TTL.")
    comp_vector = Option(comp_vector, "Completion vector (negative: polling).")
    max_poll = Option(max_poll, "Most polls of the completion queue at a time.")
    memory_regions = Option(_memory_regions, "Buffers to register with the device.")


def _check(config: UdpIbvConfig) -> None:
    """The reference's order: names resolved, then the arguments checked,
    and only then the device is looked for."""
    resolved = [_net.resolve(host, port)[1][0] for host, port in config.endpoints]
    if not resolved:
        raise ValueError("endpoints is empty")
    for address in resolved:
        if ":" in address or not _net.is_multicast(address):
            raise ValueError("endpoint is not an IPv4 multicast address")
    check_interface(config.interface_address)
    extents = sorted(_buffer_extent(region) for region in config.memory_regions)
    for address, length in extents:
        if length == 0:
            raise ValueError("memory region must have non-zero size")
    for (a, alen), (b, _) in zip(extents, extents[1:]):
        if a + alen > b:
            raise ValueError("memory regions overlap")


class UdpIbvStream(Stream):
    """``UdpIbvStream(thread_pool, config=StreamConfig(), udp_ibv_config)``:
    UDP over ibverbs. Checks its arguments, then raises
    :class:`spead2._ibv.IbvUnavailable` (no device here)."""

    def __init__(self, thread_pool: "_spead2.ThreadPool", *args: Any, **kwargs: Any) -> None:
        values = bind_arguments("UdpIbvStream", ("config", "udp_ibv_config"), args, kwargs,
                                ("udp_ibv_config",))
        if not isinstance(thread_pool, _spead2.ThreadPool):
            raise TypeError(f"thread_pool must be a spead2.ThreadPool, not "
                            f"{type(thread_pool).__name__}")
        config = values.get("config")
        if config is not None and not isinstance(config, StreamConfig):
            raise TypeError(f"config must be a spead2.send.StreamConfig, not "
                            f"{type(config).__name__}")
        ibv = values["udp_ibv_config"]
        if not isinstance(ibv, UdpIbvConfig):
            raise TypeError(f"udp_ibv_config must be a spead2.send.UdpIbvConfig, not "
                            f"{type(ibv).__name__}")
        _check(ibv)
        raise no_device(ibv.interface_address)
