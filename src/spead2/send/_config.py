"""Configuration of sending streams: :class:`StreamConfig` and its enums,
:class:`RateMethod` and :class:`GroupMode` (the order of a group's packets).

A stream copies its configuration when it is built; later changes to the
object do not reach it.
"""

import math
from typing import Any

from .._args import as_nonzero_unsigned, as_unsigned
from .._config import Config, IntEnum, Option

__all__ = ["RateMethod", "GroupMode", "StreamConfig"]

# Sizes are size_t in the C core, which adds them to one another: they are
# kept below 2**63 so that no sum of two of them wraps.
SIZE_BITS = 63


class RateMethod(IntEnum):
    """How a stream keeps to its rate. Without rate-limiting hardware, ``HW``
    and ``AUTO`` fall back to ``SW`` (software pacing), as the reference
    does where the hardware cannot."""

    SW = 0
    HW = 1
    AUTO = 2


class GroupMode(IntEnum):
    """The order in which ``send_heaps`` interleaves the packets of a group:
    ``ROUND_ROBIN`` takes the next packet of each unfinished heap in turn,
    in list order; ``SERIAL`` sends each heap in full, in list order."""

    ROUND_ROBIN = 0
    SERIAL = 1


def _size(value: Any, name: str) -> int:
    return as_unsigned(value, name, SIZE_BITS)


def _count(value: Any, name: str) -> int:
    return as_nonzero_unsigned(value, name, SIZE_BITS)


def _finite_float(value: Any, name: str) -> float:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__float__"):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    return float(value)


def check_rate(value: Any, name: str = "rate") -> float:
    """A rate in bytes per second: finite and non-negative (0: unlimited)."""
    value = _finite_float(value, name)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite non-negative number, not {value}")
    return value


def _check_ratio(value: Any, name: str) -> float:
    value = _finite_float(value, name)
    if not math.isfinite(value) or value < 1.0:
        raise ValueError(f"{name} must be a finite number of at least 1, not {value}")
    return value


def _check_rate_method(value: Any, name: str) -> RateMethod:
    if not isinstance(value, RateMethod):
        raise TypeError(f"{name} must be a spead2.send.RateMethod, not {type(value).__name__}")
    return value


_POSITIONAL = ("max_packet_size", "rate", "burst_size", "max_heaps")


class StreamConfig(Config):
    """Parameters of a sending stream.

    Keywords (each also a read/write attribute, checked when assigned):
    ``max_packet_size`` (rounded down to a multiple of 8 when heaps are
    split into packets; below 56 sending raises ``ValueError``), ``rate``
    (bytes per second, 0 for no limit), ``burst_size`` (bytes sent back to
    back before pacing waits), ``max_heaps`` (heaps queued or in
    transmission at once), ``burst_rate_ratio`` (how much faster than
    ``rate`` a stream that fell behind may catch up) and ``rate_method``.
    The 2016 positional order ``(max_packet_size, rate, burst_size,
    max_heaps)`` is accepted too.
    """

    DEFAULT_MAX_PACKET_SIZE = 1472
    DEFAULT_RATE = 0.0
    DEFAULT_BURST_SIZE = 65536
    DEFAULT_MAX_HEAPS = 4
    DEFAULT_BURST_RATE_RATIO = 1.05
    DEFAULT_RATE_METHOD = RateMethod.AUTO

    __slots__ = ("_max_packet_size", "_rate", "_burst_size", "_max_heaps", "_burst_rate_ratio",
                 "_rate_method")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(_POSITIONAL):
            raise TypeError(f"StreamConfig() takes at most {len(_POSITIONAL)} positional "
                            f"arguments ({len(args)} given)")
        for name in _POSITIONAL[:len(args)]:
            if name in kwargs:
                raise TypeError(f"StreamConfig() got multiple values for argument {name!r}")
        super().__init__(**dict(zip(_POSITIONAL, args)), **kwargs)

    def _set_defaults(self) -> None:
        self._max_packet_size = self.DEFAULT_MAX_PACKET_SIZE
        self._rate = self.DEFAULT_RATE
        self._burst_size = self.DEFAULT_BURST_SIZE
        self._max_heaps = self.DEFAULT_MAX_HEAPS
        self._burst_rate_ratio = self.DEFAULT_BURST_RATE_RATIO
        self._rate_method = self.DEFAULT_RATE_METHOD

    max_packet_size = Option(_size, "Largest packet to send, in bytes (header included).")
    rate = Option(check_rate, "Target rate in bytes per second; 0 means as fast as possible.")
    burst_size = Option(_size, "Bytes that may be sent back to back, ahead of the rate.")
    max_heaps = Option(_count, "Heaps that may be queued or in transmission at once.")
    burst_rate_ratio = Option(_check_ratio, "Burst rate as a multiple of rate (at least 1).")
    rate_method = Option(_check_rate_method, "How the rate is kept (a RateMethod).")

    @property
    def burst_rate(self) -> float:
        """``rate * burst_rate_ratio``: the fastest a stream catching up goes."""
        return self._rate * self._burst_rate_ratio

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StreamConfig):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self._public())

    __hash__ = None  # type: ignore[assignment]
