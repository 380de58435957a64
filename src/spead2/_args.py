"""Checks of numeric arguments shared by the public classes."""

import operator


def as_index(value, name: str) -> int:
    """``value`` as an int, accepting exactly what ``operator.index`` does
    (ints, numpy integers), so a float or a string is a TypeError rather than
    silently truncated or parsed."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, not {type(value).__name__}") from None
