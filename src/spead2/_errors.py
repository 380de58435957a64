"""Exception types shared by the receive and send sides."""


class SocketError(OSError, RuntimeError):
    """A socket could not be set up (name resolution, bind, multicast join).

    An ``OSError`` (so ``errno`` is kept) that is also a ``RuntimeError``, the
    kind of error the documented API raises for these failures.
    """


class FilterError(ValueError, RuntimeError):
    """A capture filter (``Stream.add_udp_pcap_file_reader``) was not understood.

    A ``ValueError`` (the argument is bad) that is also a ``RuntimeError``,
    the kind of error the reference raises for it. The message names the
    offending word.
    """
