"""Checks of the arguments of the public classes: one rule per mistake.

=========================================================  ===================
mistake                                                    exception
=========================================================  ===================
not an integer where one is needed (``bool``, ``float``,   ``TypeError``
``str``, ``None``...)
an unsigned argument (size, count, port, id, index) that   :class:`RangeError`
is negative or too large for its C type                    (``OverflowError``
                                                           and ``TypeError``);
                                                           for ports
                                                           :class:`PortRangeError`
zero where zero is not allowed                             ``ValueError``
an integer outside the argument's domain (an unknown enum  ``ValueError``
value or flag, a size below a minimum)
=========================================================  ===================

Every message names the argument. ``numpy`` integers are integers; anything
``operator.index`` refuses is not.
"""

import operator
from typing import Any, Dict, Iterable, Optional, Sequence

from ._errors import PortRangeError, RangeError

__all__ = ["as_index", "as_unsigned", "as_nonzero_unsigned", "as_port", "as_flags",
           "as_str", "is_integer", "bind_arguments"]


def is_integer(value: Any) -> bool:
    """Whether :func:`as_index` accepts ``value`` (for telling the forms of a
    constructor apart where the documented API does so by type)."""
    return not isinstance(value, bool) and hasattr(type(value), "__index__")


def as_index(value: Any, name: str) -> int:
    """``value`` as an int, accepting exactly what ``operator.index`` does
    (ints, numpy integers) except ``bool``; anything else is a TypeError, so
    a float or a string is never silently truncated or parsed."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, not {type(value).__name__}") from None


def as_unsigned(value: Any, name: str, bits: int = 64, error: type = RangeError) -> int:
    """``value`` as an int in [0, 2**bits): TypeError for a non-integer,
    :class:`RangeError` (or ``error``) when negative or too large."""
    value = as_index(value, name)
    if value < 0:
        raise error(f"{name} must be non-negative, not {value}")
    if value >> bits:
        raise error(f"{name} {value} does not fit in {bits} bits")
    return value


def as_nonzero_unsigned(value: Any, name: str, bits: int = 64) -> int:
    """As :func:`as_unsigned`, and a ValueError for 0 (``name`` must be at
    least 1)."""
    value = as_unsigned(value, name, bits)
    if value == 0:
        raise ValueError(f"{name} must be at least 1")
    return value


def as_port(value: Any, name: str = "port") -> int:
    """A port number 0-65535; :class:`PortRangeError` outside it."""
    return as_unsigned(value, name, 16, PortRangeError)


def as_flags(value: Any, name: str, valid: Optional[int] = None, bits: int = 32) -> int:
    """A set of bit flags: TypeError for a non-integer, ValueError for a
    negative value or a bit outside ``valid``, :class:`RangeError` when it
    does not fit in ``bits`` bits."""
    value = as_index(value, name)
    if value < 0 or (valid is not None and value & ~valid):
        raise ValueError(f"unknown {name} flags {value:#x}")
    if value >> bits:
        raise RangeError(f"{name} {value:#x} does not fit in {bits} bits")
    return value


def as_str(value: Any, name: str) -> str:
    """A str (``bytes`` are decoded as ASCII); anything else is a TypeError."""
    if isinstance(value, bytes):
        return value.decode("ascii")
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    return value


def bind_arguments(owner: str, names: Sequence[str], args: Sequence[Any],
                   kwargs: Dict[str, Any], required: Iterable[str] = (),
                   aliases: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """Match ``args`` and ``kwargs`` to the parameter ``names`` of one form of
    ``owner`` as Python would, with the same TypeErrors: too many positional
    arguments, an unknown or repeated keyword, a missing ``required`` one.
    ``aliases`` maps other accepted keywords to parameter names."""
    if len(args) > len(names):
        raise TypeError(f"{owner} takes at most {len(names)} positional arguments "
                        f"({len(args)} given)")
    values = dict(zip(names, args))
    for key, value in kwargs.items():
        name = aliases.get(key, key) if aliases else key
        if name not in names:
            raise TypeError(f"{owner} got an unexpected keyword argument {key!r}")
        if name in values:
            raise TypeError(f"{owner} got multiple values for argument {key!r}")
        values[name] = value
    missing = [name for name in required if name not in values]
    if missing:
        raise TypeError(f"{owner} missing required arguments: {', '.join(missing)}")
    return values
