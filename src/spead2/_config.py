"""The machinery of the configuration classes of both directions
(``spead2.recv.StreamConfig`` and the like, ``spead2.send.StreamConfig``,
``spead2.send.UdpIbvConfig``): keyword-only construction, checked
read/write attributes, independent copies, and enums whose members also
convert with ``int()``.
"""

import enum
from typing import Any, Callable, List, Optional, Tuple, TypeVar

_C = TypeVar("_C", bound="Config")

__all__ = ["flag", "Option", "ListOption", "IntEnum", "Config"]


def flag(value: Any, name: str) -> bool:
    """A boolean option: any value, by its truth (as the reference takes
    them)."""
    return bool(value)


class Option:
    """A checked read/write attribute of a configuration, stored in the
    slot ``_<name>``."""

    def __init__(self, check: Callable[[Any, str], Any], doc: str = "") -> None:
        self.check = check
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.slot = "_" + name

    def __get__(self, obj: Any, owner: Optional[type] = None) -> Any:
        return self if obj is None else getattr(obj, self.slot)

    def __set__(self, obj: Any, value: Any) -> None:
        setattr(obj, self.slot, self.check(value, self.name))


class ListOption(Option):
    """An option holding a list: the getter returns a copy, so that the
    configuration only changes by assignment."""

    def __get__(self, obj: Any, owner: Optional[type] = None) -> Any:
        return self if obj is None else list(getattr(obj, self.slot))


class IntEnum(enum.Enum):
    """An enum whose members also convert with ``int()``, but equal only
    themselves."""

    def __int__(self) -> int:
        return self.value

    def __index__(self) -> int:
        return self.value


class Config:
    """Keyword-only construction, applied as attribute assignments in the
    order given (after the subclass's ``_set_defaults``); copies are
    independent."""

    __slots__: Tuple[str, ...] = ()

    def _set_defaults(self) -> None:
        """Give every option its default (each subclass says what)."""
        raise NotImplementedError

    def __init__(self, **kwargs: Any) -> None:
        self._set_defaults()
        for key, value in kwargs.items():
            if not isinstance(getattr(type(self), key, None), Option):
                raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument "
                                f"{key!r}")
            setattr(self, key, value)

    def __copy__(self: _C) -> _C:
        out = type(self).__new__(type(self))
        for cls in type(self).__mro__:
            for slot in getattr(cls, "__slots__", ()):
                value = getattr(self, slot)
                setattr(out, slot, list(value) if isinstance(value, list) else value)
        return out

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._public())
        return f"{type(self).__name__}({fields})"

    def _public(self) -> List[str]:
        return [name for name in dir(type(self)) if isinstance(getattr(type(self), name), Option)]
