"""Socket set-up for UDP readers: the argument forms of ``add_udp_reader``,
binding and multicast membership (through :mod:`spead2._net`)."""

import socket as _socket
from typing import Any, Dict, Tuple

from .. import _net
from .._args import as_port, as_str, as_unsigned, bind_arguments, is_integer
from . import DEFAULT_UDP_BUFFER_SIZE, DEFAULT_UDP_MAX_SIZE

_UNICAST = ("port", "max_size", "buffer_size", "bind_hostname", "socket")
_MULTICAST_IPV4 = ("multicast_group", "port", "max_size", "buffer_size", "interface_address")
_MULTICAST_IPV6 = ("multicast_group", "port", "max_size", "buffer_size", "interface_index")


def _sizes(values: Dict[str, Any]) -> Tuple[int, int]:
    max_size = as_unsigned(values.get("max_size", DEFAULT_UDP_MAX_SIZE), "max_size")
    buffer_size = as_unsigned(values.get("buffer_size", DEFAULT_UDP_BUFFER_SIZE), "buffer_size")
    if max_size < 8:
        raise ValueError("max_size must be at least 8 (a SPEAD header)")
    return max_size, buffer_size


def _open_unicast(values: Dict[str, Any]) -> Tuple[_socket.socket, int]:
    port = as_port(values["port"])
    max_size, buffer_size = _sizes(values)
    bind_hostname = as_str(values.get("bind_hostname") or "", "bind_hostname")
    given = values.get("socket")
    # the caller's socket object stays theirs; we work on a duplicate
    sock = _net.adopt_socket(given) if given is not None else None
    try:
        if bind_hostname:
            family, addr = _net.resolve(bind_hostname, port,
                                        sock.family if sock is not None else 0)
        else:
            family = sock.family if sock is not None else _socket.AF_INET
            addr = (_net.wildcard_address(family), port)
        if sock is None:
            sock = _net.create_socket(family)
        multicast = bool(bind_hostname) and _net.is_multicast(addr[0])
        _net.set_buffer_size(sock, buffer_size, _net.RECEIVE)
        _net.bind(sock, addr, f"{bind_hostname or '*'}:{port}", reuse=multicast)
        if multicast:
            _net.join_group(sock, addr[0])
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    return sock, max_size


def _open_multicast(values: Dict[str, Any]) -> Tuple[_socket.socket, int]:
    group = as_str(values["multicast_group"], "multicast_group")
    port = as_port(values["port"])
    max_size, buffer_size = _sizes(values)
    family, addr = _net.resolve(group, port)
    if not _net.is_multicast(addr[0]):
        raise ValueError(f"multicast_group {group!r} is not a multicast address")
    interface_address = ""
    interface_index = 0
    if "interface_index" in values:
        if family != _socket.AF_INET6:
            raise ValueError("interface_index is only valid for IPv6 multicast groups")
        interface_index = as_unsigned(values["interface_index"], "interface_index", 32)
    else:
        if family != _socket.AF_INET:
            raise ValueError("interface_address is only valid for IPv4 multicast groups; "
                             "use interface_index for IPv6")
        interface_address = as_str(values.get("interface_address", ""), "interface_address")
    sock = _net.create_socket(family)
    try:
        _net.set_buffer_size(sock, buffer_size, _net.RECEIVE)
        _net.bind(sock, addr, f"{group}:{port}", reuse=True)
        _net.join_group(sock, addr[0], interface_address, interface_index)
    except BaseException:
        sock.close()
        raise
    return sock, max_size


def open_udp_socket(*args: Any, **kwargs: Any) -> Tuple[_socket.socket, int]:
    """Create and bind the socket for one ``add_udp_reader`` call; returns
    ``(socket, max_size)``.

    The documented forms, told apart as the documented API requires:

    - ``(port, max_size=DEFAULT_UDP_MAX_SIZE, buffer_size=DEFAULT_UDP_BUFFER_SIZE,
      bind_hostname='', socket=None)``: unicast, or a multicast group as
      ``bind_hostname``;
    - ``(multicast_group, port, max_size, buffer_size, interface_address='')``:
      IPv4 multicast on an interface given by its address;
    - ``(multicast_group, port, max_size, buffer_size, interface_index=0)``:
      IPv6 multicast on an interface given by its index.

    A group (a ``str``) first, or the ``multicast_group`` keyword, selects
    a multicast form; then the ``interface_index`` keyword, or an integer
    fifth argument, selects the IPv6 one.
    """
    first = args[0] if args else kwargs.get("multicast_group", kwargs.get("port"))
    if "multicast_group" not in kwargs and not isinstance(first, (str, bytes)):
        return _open_unicast(bind_arguments("add_udp_reader", _UNICAST, args, kwargs, ("port",)))
    if "interface_index" in kwargs and "interface_address" in kwargs:
        raise TypeError("give interface_address (IPv4) or interface_index (IPv6), not both")
    ipv6 = "interface_index" in kwargs or (len(args) > 4 and is_integer(args[4]))
    names = _MULTICAST_IPV6 if ipv6 else _MULTICAST_IPV4
    return _open_multicast(bind_arguments("add_udp_reader", names, args, kwargs, names[:2]))
