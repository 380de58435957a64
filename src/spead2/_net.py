"""Socket set-up shared by the receive side, the send side and the tools.

Resolving names, choosing IPv4 or IPv6, creating, binding and configuring
sockets (buffer sizes, multicast membership and sending options), and taking
over a socket a caller made. Failures of the network stack are
:class:`spead2.SocketError` (an ``OSError`` and a ``RuntimeError``); bad
argument types are ``TypeError``. The socket type is a parameter: UDP or
TCP.
"""

import errno
import ipaddress
import logging
import os
import socket as _socket
import struct
import sys
from typing import Any, Dict, List, Optional, Tuple

from ._args import as_port, as_unsigned
from ._errors import SocketError
from ._logging import log

__all__ = ["socket_error", "kind", "is_multicast", "resolve", "resolve_endpoints",
           "create_socket", "adopt_socket", "set_buffer_size", "bind", "listen", "bound_port",
           "is_listening", "join_group", "set_multicast_send", "wildcard_address", "RECEIVE",
           "SEND"]

#: Directions for :func:`set_buffer_size`.
RECEIVE = "receive"
SEND = "send"

_BUFFER_OPTIONS = {RECEIVE: (_socket.SO_RCVBUF, "net.core.rmem_max"),
                   SEND: (_socket.SO_SNDBUF, "net.core.wmem_max")}
_KINDS: Dict[int, str] = {_socket.SOCK_DGRAM: "UDP", _socket.SOCK_STREAM: "TCP"}
_TYPE_NAMES: Dict[int, str] = {_socket.SOCK_DGRAM: "SOCK_DGRAM", _socket.SOCK_STREAM: "SOCK_STREAM"}
_INT_MAX = 2**31 - 1


def socket_error(exc: BaseException, what: str) -> SocketError:
    """A :class:`SocketError` saying ``what`` failed because of ``exc``,
    keeping its errno."""
    code = getattr(exc, "errno", None)
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    if code is None:
        return SocketError(f"{what}: {reason}")
    return SocketError(code, f"{what}: {reason}")


def kind(socktype: int) -> str:
    """``'UDP'`` or ``'TCP'``."""
    return _KINDS.get(socktype, str(socktype))


def is_multicast(address: str) -> bool:
    """Whether ``address`` (an IP address, with an optional ``%scope``) is a
    multicast group; a host name is not."""
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_multicast
    except ValueError:
        return False


def wildcard_address(family: int) -> str:
    """The address that binds to every interface of ``family``."""
    return "::" if family == _socket.AF_INET6 else "0.0.0.0"


def resolve(host: str, port: Any, family: int = _socket.AF_UNSPEC,
            socktype: int = _socket.SOCK_DGRAM) -> Tuple[int, tuple]:
    """``(family, sockaddr)`` of the first address of ``host`` (of
    ``family``, if given). A name that cannot be resolved is a
    :class:`SocketError` whose message says "Host not found"."""
    port = as_port(port)
    try:
        infos = _socket.getaddrinfo(host, port, family, socktype)
    except (OSError, UnicodeError) as exc:
        raise socket_error(exc, f"cannot resolve {host!r}: Host not found") from None
    if not infos:
        raise SocketError(f"cannot resolve {host!r}: Host not found")
    return infos[0][0], infos[0][4]


def resolve_endpoints(endpoints: Any, family: int = _socket.AF_UNSPEC,
                      socktype: int = _socket.SOCK_DGRAM) -> Tuple[int, List[tuple]]:
    """``(family, [sockaddr, ...])`` of a list of ``(host, port)`` pairs, all
    of one family (``family``, if given). ``ValueError`` if the list is empty
    or mixes IPv4 and IPv6; ``TypeError`` if it is not a list of pairs; a
    name that cannot be resolved is a :class:`SocketError` ("Host not
    found")."""
    if isinstance(endpoints, (str, bytes)) or not hasattr(endpoints, "__iter__"):
        raise TypeError(f"endpoints must be a list of (host, port) pairs, not "
                        f"{type(endpoints).__name__}")
    pairs = list(endpoints)
    if not pairs:
        raise ValueError("endpoints is empty")
    out: List[tuple] = []
    requested = family
    for pair in pairs:
        if isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2:
            raise TypeError(f"each endpoint must be a (host, port) pair, not {pair!r}")
        host, port = pair
        if isinstance(host, bytes):
            host = host.decode("ascii")
        if not isinstance(host, str):
            raise TypeError(f"endpoint host must be a str, not {type(host).__name__}")
        found, sockaddr = resolve(host, port, requested, socktype)
        if not out:
            family = found
        elif found != family:
            raise ValueError("endpoints mix IPv4 and IPv6 addresses")
        out.append(sockaddr)
    return family, out


def create_socket(family: int, socktype: int = _socket.SOCK_DGRAM) -> _socket.socket:
    """A new socket; :class:`SocketError` if the OS refuses."""
    try:
        return _socket.socket(family, socktype)
    except OSError as exc:
        raise socket_error(exc, f"cannot create {kind(socktype)} socket") from None


def adopt_socket(sock: Any, socktype: int = _socket.SOCK_DGRAM,
                 name: str = "socket") -> _socket.socket:
    """A socket of our own on a duplicate of the caller's ``sock``, which the
    caller may then close.

    ``sock`` must have ``fileno()`` and be an IPv4 or IPv6 socket of
    ``socktype``, else TypeError; a closed one is a :class:`SocketError`
    (EBADF).
    """
    fileno = getattr(sock, "fileno", None)
    if not callable(fileno):
        raise TypeError(f"{name} must be a socket.socket (or have fileno()), not "
                        f"{type(sock).__name__}")
    fd = fileno()
    if not isinstance(fd, int) or fd < 0:
        raise SocketError(errno.EBADF, f"cannot use the given {name}: it is closed")
    try:
        dup = os.dup(fd)
    except OSError as exc:
        raise socket_error(exc, f"cannot use the given {name}") from None
    try:
        own = _socket.socket(fileno=dup)
    except OSError:
        os.close(dup)
        raise TypeError(f"{name} must be a socket, but its file descriptor {fd} is not "
                        "one") from None
    if own.family not in (_socket.AF_INET, _socket.AF_INET6) or own.type != socktype:
        what = f"{own.family!r}, {own.type!r}"
        own.close()
        raise TypeError(f"{name} must be an IPv4 or IPv6 {kind(socktype)} "
                        f"({_TYPE_NAMES.get(socktype, socktype)}) socket, not {what}")
    return own


def set_buffer_size(sock: _socket.socket, size: Any, direction: str = RECEIVE) -> None:
    """Ask for a ``direction`` (:data:`RECEIVE` or :data:`SEND`) buffer of
    ``size`` bytes (0: leave the OS default). Getting less is a warning, not
    an error."""
    size = as_unsigned(size, "buffer_size")
    if size == 0:
        return
    option, sysctl = _BUFFER_OPTIONS[direction]
    try:
        sock.setsockopt(_socket.SOL_SOCKET, option, min(size, _INT_MAX))
        actual = sock.getsockopt(_socket.SOL_SOCKET, option)
    except OSError as exc:
        log(logging.WARNING, "could not set the socket %s buffer size to %d: %s",
            direction, size, exc)
        return
    if sys.platform.startswith("linux"):
        actual //= 2  # Linux reports twice the size it grants
    if actual < size:
        log(logging.WARNING, "requested socket buffer size %d but only got %d: refer to the "
            "documentation for your OS (%s on Linux)", size, actual, sysctl)


def bind(sock: _socket.socket, sockaddr: tuple, what: str, reuse: bool = False) -> None:
    """Bind ``sock`` to ``sockaddr`` (``what`` names it in errors), with
    ``SO_REUSEADDR`` first if ``reuse`` (so that several sockets can join
    one multicast group on one port)."""
    try:
        if reuse:
            sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
    except OSError as exc:
        raise socket_error(exc, f"cannot bind {kind(sock.type)} socket to {what}") from None


def listen(sock: _socket.socket, what: str) -> None:
    """Let bound TCP ``sock`` accept connections (``what`` names it in
    errors)."""
    try:
        sock.listen()
    except OSError as exc:
        raise socket_error(exc, f"cannot listen on TCP socket {what}") from None


def bound_port(sock: _socket.socket) -> int:
    """The port ``sock`` is bound to; 0 if it is not bound."""
    return sock.getsockname()[1]


def is_listening(sock: _socket.socket) -> bool:
    """Whether ``sock`` accepts connections (``listen`` was called)."""
    return bool(sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_ACCEPTCONN))


def join_group(sock: _socket.socket, group: str, interface_address: str = "",
               interface_index: int = 0) -> None:
    """Join multicast ``group`` (an address of ``sock``'s family): an IPv4
    group on the interface with ``interface_address`` (``''``: the OS
    chooses), an IPv6 group on the interface numbered ``interface_index``
    (0: the OS chooses)."""
    interface_index = as_unsigned(interface_index, "interface_index", 32)
    try:
        if sock.family == _socket.AF_INET6:
            mreq = (_socket.inet_pton(_socket.AF_INET6, group.split("%")[0])
                    + struct.pack("@I", interface_index))
            sock.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_JOIN_GROUP, mreq)
        else:
            iface = (resolve(interface_address, 0, _socket.AF_INET)[1][0] if interface_address
                     else "0.0.0.0")
            mreq = _socket.inet_aton(group) + _socket.inet_aton(iface)
            sock.setsockopt(_socket.IPPROTO_IP, _socket.IP_ADD_MEMBERSHIP, mreq)
    except OSError as exc:
        raise socket_error(exc, f"cannot join multicast group {group}") from None


def set_multicast_send(sock: _socket.socket, ttl: int, interface_address: Optional[str] = None,
                       interface_index: Optional[int] = None,
                       loop: Optional[bool] = None) -> None:
    """Options for sending to a multicast group from ``sock``: the TTL (IPv4)
    or hop limit (IPv6), the interface (an IPv4 address, or an IPv6 index;
    None: the routes decide) and whether the host's own sockets get the
    packets (None: the OS default)."""
    ttl = as_unsigned(ttl, "ttl", 8)
    if interface_index is not None:
        interface_index = as_unsigned(interface_index, "interface_index", 32)
    ipv6 = sock.family == _socket.AF_INET6
    try:
        if ipv6:
            sock.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_MULTICAST_HOPS, ttl)
            if interface_index is not None:
                sock.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_MULTICAST_IF, interface_index)
            if loop is not None:
                sock.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_MULTICAST_LOOP, int(loop))
        else:
            sock.setsockopt(_socket.IPPROTO_IP, _socket.IP_MULTICAST_TTL, ttl)
            if interface_address is not None:
                iface = resolve(interface_address, 0, _socket.AF_INET)[1][0]
                sock.setsockopt(_socket.IPPROTO_IP, _socket.IP_MULTICAST_IF,
                                _socket.inet_aton(iface))
            if loop is not None:
                sock.setsockopt(_socket.IPPROTO_IP, _socket.IP_MULTICAST_LOOP, int(loop))
    except SocketError:
        raise
    except OSError as exc:
        raise socket_error(exc, "cannot configure multicast") from None
