"""Exception types shared by the receive and send sides."""


class SocketError(OSError, RuntimeError):
    """A socket could not be set up (name resolution, bind, multicast join).

    An ``OSError`` (so ``errno`` is kept) that is also a ``RuntimeError``, the
    kind of error the documented API raises for these failures.
    """
