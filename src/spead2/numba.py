"""Helpers for place callbacks written with numba (``pip install '.[numba]'``).

Importing this module imports numba (ImportError without it); nothing else in
spead2 imports it.
"""

from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["intp_to_voidptr"]


@intrinsic
def intp_to_voidptr(typingctx, src):
    """Reinterpret an ``intp``/``uintp`` (a pointer field of
    :data:`spead2.recv.numba.chunk_place_data`) as a ``void *``, for
    ``numba.carray``."""
    if not isinstance(src, types.Integer):
        return None
    sig = types.voidptr(src)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return sig, codegen
