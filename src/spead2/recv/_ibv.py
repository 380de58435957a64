"""``UdpIbvConfig`` and ``Stream.add_udp_ibv_reader``: the names of
spead2's ibverbs receiver, which check their arguments as the reference
does and then fail with :class:`spead2._ibv.IbvUnavailable`, this
implementation having no ibverbs support."""

from typing import List

from .. import _net
from .._args import as_nonzero_unsigned, as_str
from .._config import Config, Option
from .._ibv import check_interface, comp_vector, endpoints, max_poll, no_device, zero_means

__all__ = ["UdpIbvConfig", "check_reader"]


class UdpIbvConfig(Config):
    """Where and how an ibverbs UDP reader receives: ``endpoints`` (IPv4
    ``(host, port)`` pairs), ``interface_address`` (the IPv4 address of the
    interface), ``buffer_size`` (0: the default), ``max_size`` (largest
    packet), ``comp_vector`` and ``max_poll``."""

    DEFAULT_BUFFER_SIZE = 16 * 1024 * 1024
    DEFAULT_MAX_SIZE = 9200
    DEFAULT_MAX_POLL = 10

    __slots__ = ("_endpoints", "_interface_address", "_buffer_size", "_max_size",
                 "_comp_vector", "_max_poll")

    def _set_defaults(self) -> None:
        self._endpoints: List[tuple] = []
        self._interface_address = ""
        self._buffer_size = self.DEFAULT_BUFFER_SIZE
        self._max_size = self.DEFAULT_MAX_SIZE
        self._comp_vector = 0
        self._max_poll = self.DEFAULT_MAX_POLL

    endpoints = Option(endpoints, "Addresses to receive on.")
    interface_address = Option(as_str, "IPv4 address of the interface to receive on.")
    buffer_size = Option(zero_means(DEFAULT_BUFFER_SIZE), "Bytes of packet buffer (0: the "
                                                          "default).")
    max_size = Option(as_nonzero_unsigned, "Largest packet, in bytes.")
    comp_vector = Option(comp_vector, "Completion vector (negative: polling).")
    max_poll = Option(max_poll, "Most polls of the completion queue at a time.")


def check_reader(config: UdpIbvConfig) -> None:
    """What adding an ibverbs reader does here: names resolved, arguments
    checked in the reference's order, and then the missing device raised."""
    if not isinstance(config, UdpIbvConfig):
        raise TypeError(f"config must be a spead2.recv.UdpIbvConfig, not "
                        f"{type(config).__name__}")
    resolved = [_net.resolve(host, port)[1][0] for host, port in config.endpoints]
    if not resolved:
        raise ValueError("endpoints is empty")
    for address in resolved:
        if ":" in address:
            raise ValueError("endpoint is not an IPv4 address")
    check_interface(config.interface_address)
    raise no_device(config.interface_address)
