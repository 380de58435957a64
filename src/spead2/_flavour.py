"""SPEAD flavour: pointer widths and PySPEAD bug-compatibility flags."""

from typing import Any, Tuple

from ._args import as_flags, as_index

_VALID_BUG_COMPAT = 7


class Flavour:
    """A SPEAD-64-XX flavour with optional PySPEAD 0.5.2 bug compatibility.

    Read-only; compares and hashes by value.
    """

    __slots__ = ("_version", "_item_pointer_bits", "_heap_address_bits", "_bug_compat")
    _version: int
    _item_pointer_bits: int
    _heap_address_bits: int
    _bug_compat: int

    def __init__(self, version: int = 4, item_pointer_bits: int = 64,
                 heap_address_bits: int = 40, bug_compat: int = 0) -> None:
        version = as_index(version, "version")
        item_pointer_bits = as_index(item_pointer_bits, "item_pointer_bits")
        heap_address_bits = as_index(heap_address_bits, "heap_address_bits")
        bug_compat = as_flags(bug_compat, "bug_compat", _VALID_BUG_COMPAT)
        if version != 4:
            raise ValueError(f"unsupported SPEAD version {version} (only 4 is supported)")
        if item_pointer_bits != 64:
            raise ValueError(f"item_pointer_bits must be 64, not {item_pointer_bits}")
        if not (0 < heap_address_bits < 64) or heap_address_bits % 8 != 0:
            raise ValueError(
                f"heap_address_bits must be a multiple of 8 strictly between 0 and 64, "
                f"not {heap_address_bits}")
        object.__setattr__(self, "_version", version)
        object.__setattr__(self, "_item_pointer_bits", item_pointer_bits)
        object.__setattr__(self, "_heap_address_bits", heap_address_bits)
        object.__setattr__(self, "_bug_compat", bug_compat)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Flavour is read-only")

    @property
    def version(self) -> int:
        return self._version

    @property
    def item_pointer_bits(self) -> int:
        return self._item_pointer_bits

    @property
    def heap_address_bits(self) -> int:
        return self._heap_address_bits

    @property
    def bug_compat(self) -> int:
        return self._bug_compat

    def _key(self) -> Tuple[int, int, int, int]:
        return (self._version, self._item_pointer_bits, self._heap_address_bits, self._bug_compat)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Flavour):
            return self._key() == other._key()
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        if isinstance(other, Flavour):
            return self._key() != other._key()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (f"Flavour(version={self._version}, item_pointer_bits={self._item_pointer_bits}, "
                f"heap_address_bits={self._heap_address_bits}, bug_compat={self._bug_compat})")

    def __reduce__(self) -> Tuple[type, Tuple[int, int, int, int]]:
        return (Flavour, self._key())
