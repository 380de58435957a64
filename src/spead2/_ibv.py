"""ibverbs (RDMA) names, so that programs probing for them with ``hasattr``
find them: this implementation has no ibverbs support, so every use fails
cleanly with :class:`IbvUnavailable` once the arguments have been checked.

Shared by both directions: ``spead2.IbvContext`` here, and
``spead2.send.UdpIbvStream`` (``spead2.send._ibv``).
"""

import errno
from typing import Any

from ._args import as_str

__all__ = ["IbvUnavailable", "IbvContext", "no_device"]


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
