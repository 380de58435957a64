"""ibverbs (RDMA) names, so that programs probing for them with ``hasattr``
find them: this implementation has no ibverbs support, so every use fails
cleanly with :class:`IbvUnavailable` once the arguments have been checked.

Shared by both directions: ``spead2.IbvContext`` here, and
``spead2.send.UdpIbvStream`` (``spead2.send._ibv``).
"""

import errno
import socket as _socket
from typing import Any, Callable, List

from . import _net
from ._args import as_index, as_str, as_unsigned

__all__ = ["IbvUnavailable", "IbvContext", "no_device", "endpoints", "max_poll", "comp_vector",
           "zero_means", "check_interface"]


class IbvUnavailable(OSError, RuntimeError):
    """No ibverbs device serves the interface (errno ``ENODEV``): an
    ``OSError`` and, like the reference's errors, a ``RuntimeError``."""


def no_device(interface_address: str) -> IbvUnavailable:
    """The error for an interface without an ibverbs device."""
    return IbvUnavailable(errno.ENODEV, f"no ibverbs device for interface address "
                                        f"{interface_address!r} (spead2py has no ibverbs "
                                        f"support)")


class IbvContext:
    """An ibverbs device context for the interface with address
    ``interface``. Always raises :class:`IbvUnavailable` here."""

    def __init__(self, interface: Any) -> None:
        interface = as_str(interface, "interface")
        raise no_device(interface)

    def reset(self) -> None:
        """Release the device (nothing to release here)."""


# Checks shared by the receive and send ibverbs configurations.

def endpoints(value: Any, name: str) -> List[tuple]:
    """A list of ``(host, port)`` pairs."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name} must be a list of (host, port) pairs, not "
                        f"{type(value).__name__}")
    out = []
    for pair in value:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise TypeError(f"each endpoint must be a (host, port) pair, not {pair!r}")
        out.append((as_str(pair[0], "endpoint host"), as_unsigned(pair[1], "endpoint port", 16)))
    return out


def zero_means(default: int) -> Callable[[Any, str], int]:
    """A size check for which 0 means ``default`` (as the reference has it)."""
    def check(value: Any, name: str) -> int:
        return as_unsigned(value, name, 63) or default
    return check


def max_poll(value: Any, name: str) -> int:
    value = as_index(value, name)
    if value <= 0:
        raise ValueError(f"{name} must be positive, not {value}")
    return value


def comp_vector(value: Any, name: str) -> int:
    return as_index(value, name)


def check_interface(interface_address: str) -> None:
    """The interface address must be given, and be IPv4."""
    if not interface_address:
        raise ValueError("interface address has not been specified")
    family, _ = _net.resolve(interface_address, 0)
    if family != _socket.AF_INET:
        raise ValueError("interface address is not an IPv4 address")
