"""Exception types shared by the receive and send sides."""


class SocketError(OSError, RuntimeError):
    """A socket could not be set up (name resolution, bind, multicast join).

    An ``OSError`` (so ``errno`` is kept) that is also a ``RuntimeError``, the
    kind of error the documented API raises for these failures.
    """


class RangeError(OverflowError, TypeError):
    """An unsigned argument (a size, count, id or index) is negative or too
    large for the C type that holds it.

    Programs written for the 2016 API catch ``OverflowError`` for this, and
    programs written for spead2 4.x catch ``TypeError``: it is both.
    """


class PortRangeError(RangeError):
    """A port number outside 0-65535 (a :class:`RangeError`)."""


class FilterError(ValueError, RuntimeError):
    """A capture filter (``Stream.add_udp_pcap_file_reader``) was not understood.

    A ``ValueError`` (the argument is bad) that is also a ``RuntimeError``,
    the kind of error the reference raises for it. The message names the
    offending word.
    """
