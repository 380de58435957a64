"""Socket set-up for UDP readers: argument forms, binding, multicast, buffers."""

import ipaddress
import logging
import socket as _socket
import struct

from .._args import as_index
from . import DEFAULT_UDP_BUFFER_SIZE, DEFAULT_UDP_MAX_SIZE

_logger = logging.getLogger("spead2")

_UNSET = object()


def _error(exc: BaseException, what: str) -> OSError:
    from ._recv import UdpSocketError
    errno = getattr(exc, "errno", None) or 0
    return UdpSocketError(errno, f"{what}: {exc}")


def _check_port(port) -> int:
    port = as_index(port, "port")
    if port < 0 or port > 65535:
        raise OverflowError(f"port {port} out of range (0-65535)")
    return port


def _check_nonneg(name: str, value) -> int:
    value = as_index(value, name)
    if value < 0:
        raise OverflowError(f"{name} must be non-negative")
    if value >= 2**64:
        raise OverflowError(f"{name} {value} does not fit in 64 bits")
    return value


def _check_socket(sock) -> None:
    if not isinstance(sock, _socket.socket):
        raise TypeError(f"socket must be a socket.socket, not {type(sock).__name__}")
    if sock.fileno() < 0:
        raise _error(OSError(9, "the socket is closed"), "cannot use the given socket")
    if sock.type != _socket.SOCK_DGRAM:
        raise ValueError(f"socket must be a UDP (SOCK_DGRAM) socket, not {sock.type!r}")


def _resolve(host: str, port: int, family=0):
    try:
        infos = _socket.getaddrinfo(host, port, family, _socket.SOCK_DGRAM, 0,
                                    _socket.AI_PASSIVE if not host else 0)
    except _socket.gaierror as exc:
        raise _error(exc, f"cannot resolve {host!r}") from None
    return infos[0]


def _set_buffer_size(sock: _socket.socket, buffer_size: int) -> None:
    if buffer_size == 0:
        return
    sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF, buffer_size)
    # Linux reports twice the usable size it granted
    actual = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF) // 2
    if actual < buffer_size:
        _logger.warning(
            "requested socket buffer size %d but only got %d: refer to the "
            "documentation for your OS (net.core.rmem_max on Linux)", buffer_size, actual)


def _is_multicast(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_multicast
    except ValueError:
        return False


def _bind(sock: _socket.socket, addr, what: str) -> None:
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        raise _error(exc, f"cannot bind UDP socket to {what}") from None


def _open_unicast(port, max_size=DEFAULT_UDP_MAX_SIZE, buffer_size=DEFAULT_UDP_BUFFER_SIZE,
                  bind_hostname="", socket=None):
    port = _check_port(port)
    max_size = _check_nonneg("max_size", max_size)
    buffer_size = _check_nonneg("buffer_size", buffer_size)
    if max_size < 8:
        raise ValueError("max_size must be at least 8 (a SPEAD header)")
    bind_hostname = bind_hostname or ""
    if not isinstance(bind_hostname, str):
        raise TypeError(f"bind_hostname must be a str, not {type(bind_hostname).__name__}")
    if socket is not None:
        _check_socket(socket)
        # the caller's socket object stays theirs; we work on a duplicate
        sock = socket.dup()
        family = sock.family
        if bind_hostname:
            addr = _resolve(bind_hostname, port, family)[4]
        else:
            addr = ("::" if family == _socket.AF_INET6 else "0.0.0.0", port)
    else:
        if bind_hostname:
            family, _, _, _, addr = _resolve(bind_hostname, port)
        else:
            family, addr = _socket.AF_INET, ("0.0.0.0", port)
        try:
            sock = _socket.socket(family, _socket.SOCK_DGRAM)
        except OSError as exc:
            raise _error(exc, "cannot create UDP socket") from None
    multicast = bool(bind_hostname) and _is_multicast(addr[0])
    try:
        _set_buffer_size(sock, buffer_size)
        if multicast:
            sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
    except OSError as exc:
        sock.close()
        raise _error(exc, "cannot configure UDP socket") from None
    _bind(sock, addr, f"{bind_hostname or '*'}:{port}")
    if multicast:
        try:
            if family == _socket.AF_INET6:
                mreq = _socket.inet_pton(_socket.AF_INET6, addr[0]) + struct.pack("@I", 0)
                sock.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_JOIN_GROUP, mreq)
            else:
                mreq = _socket.inet_aton(addr[0]) + _socket.inet_aton("0.0.0.0")
                sock.setsockopt(_socket.IPPROTO_IP, _socket.IP_ADD_MEMBERSHIP, mreq)
        except OSError as exc:
            sock.close()
            raise _error(exc, f"cannot join multicast group {addr[0]}") from None
    return sock, max_size


def _open_multicast(multicast_group, port, max_size=DEFAULT_UDP_MAX_SIZE,
                    buffer_size=DEFAULT_UDP_BUFFER_SIZE, interface_address=_UNSET,
                    interface_index=_UNSET):
    port = _check_port(port)
    max_size = _check_nonneg("max_size", max_size)
    buffer_size = _check_nonneg("buffer_size", buffer_size)
    if max_size < 8:
        raise ValueError("max_size must be at least 8 (a SPEAD header)")
    if interface_index is not _UNSET and interface_address is not _UNSET:
        raise TypeError("give interface_address (IPv4) or interface_index (IPv6), not both")
    if isinstance(interface_address, int) and not isinstance(interface_address, bool):
        # positional fifth argument that is an int: the IPv6 form
        interface_index, interface_address = interface_address, _UNSET
    family, _, _, _, addr = _resolve(multicast_group, port)
    if not _is_multicast(addr[0]):
        raise _error(OSError(22, "not a multicast address"), f"cannot use {multicast_group!r}")
    if interface_index is not _UNSET:
        if family != _socket.AF_INET6:
            raise ValueError("interface_index is only valid for IPv6 multicast groups")
        interface_index = _check_nonneg("interface_index", interface_index)
    else:
        if family != _socket.AF_INET:
            raise ValueError("interface_address is only valid for IPv4 multicast groups; "
                             "use interface_index for IPv6")
        if interface_address is _UNSET:
            interface_address = ""
        if not isinstance(interface_address, str):
            raise TypeError(f"interface_address must be a str, not "
                            f"{type(interface_address).__name__}")
    try:
        sock = _socket.socket(family, _socket.SOCK_DGRAM)
        _set_buffer_size(sock, buffer_size)
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
    except OSError as exc:
        raise _error(exc, "cannot create UDP socket") from None
    _bind(sock, addr, f"{multicast_group}:{port}")
    try:
        if family == _socket.AF_INET6:
            mreq = _socket.inet_pton(_socket.AF_INET6, addr[0]) + struct.pack("@I", interface_index)
            sock.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_JOIN_GROUP, mreq)
        else:
            if interface_address:
                iface = _resolve(interface_address, 0, _socket.AF_INET)[4][0]
            else:
                iface = "0.0.0.0"
            mreq = _socket.inet_aton(addr[0]) + _socket.inet_aton(iface)
            sock.setsockopt(_socket.IPPROTO_IP, _socket.IP_ADD_MEMBERSHIP, mreq)
    except OSError as exc:
        sock.close()
        raise _error(exc, f"cannot join multicast group {multicast_group}") from None
    return sock, max_size


def open_udp_socket(*args, **kwargs):
    """Create and bind the socket for one ``add_udp_reader`` call.

    Returns ``(socket, max_size)``.
    """
    first = args[0] if args else kwargs.get("multicast_group", kwargs.get("port"))
    if "multicast_group" in kwargs or isinstance(first, (str, bytes)):
        if isinstance(first, bytes):
            args = (first.decode(),) + tuple(args[1:])
        return _open_multicast(*args, **kwargs)
    return _open_unicast(*args, **kwargs)
