"""Socket set-up for the socket readers: the argument forms of
``add_udp_reader`` and ``add_tcp_reader``, binding, listening and multicast
membership (through :mod:`spead2._net`)."""

import socket as _socket
from typing import Any, Dict, Tuple

from .. import _net
from .._args import (as_nonzero_unsigned, as_port, as_str, as_unsigned, bind_arguments,
                     is_integer)
from . import DEFAULT_UDP_BUFFER_SIZE, DEFAULT_UDP_MAX_SIZE

_UNICAST = ("port", "max_size", "buffer_size", "bind_hostname", "socket")
_BOUND_SOCKET = ("socket", "max_size")
_MULTICAST_IPV4 = ("multicast_group", "port", "max_size", "buffer_size", "interface_address")
_MULTICAST_IPV6 = ("multicast_group", "port", "max_size", "buffer_size", "interface_index")
_TCP_PORT = ("port", "max_size", "buffer_size", "bind_hostname")
_TCP_ACCEPTOR = ("acceptor", "max_size")


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


def _open_bound(values: Dict[str, Any]) -> Tuple[_socket.socket, int]:
    max_size, _ = _sizes(values)
    sock = _net.adopt_socket(values["socket"])
    # used as it is: an unbound socket would never receive anything
    if _net.bound_port(sock) == 0:
        sock.close()
        raise ValueError("socket must already be bound (or give the port to bind it to)")
    return sock, max_size


def _ipv4_address(host: str, name: str) -> str:
    """The IPv4 address of ``host``; an IPv6 address is a ValueError."""
    if ":" in host:  # only IPv6 literals have colons
        raise ValueError(f"{name} {host!r} is not an IPv4 address")
    return _net.resolve(host, 0, _socket.AF_INET)[1][0]


def _open_ipv4(values: Dict[str, Any]) -> Tuple[_socket.socket, int]:
    group = as_str(values["multicast_group"], "multicast_group")
    port = as_port(values["port"])
    max_size, buffer_size = _sizes(values)
    interface = _ipv4_address(as_str(values.get("interface_address", "0.0.0.0"),
                                     "interface_address"), "interface_address")
    address = _ipv4_address(group, "multicast_group")
    if address == "0.0.0.0":
        address = interface  # the wildcard means the interface's own address
    multicast = _net.is_multicast(address)
    if not multicast and address != interface:
        raise ValueError(f"multicast_group {group!r} is not a multicast address, nor the "
                         f"interface_address {interface!r}")
    sock = _net.create_socket(_socket.AF_INET)
    try:
        _net.set_buffer_size(sock, buffer_size, _net.RECEIVE)
        _net.bind(sock, (address, port), f"{group}:{port}", reuse=multicast)
        if multicast:
            _net.join_group(sock, address, interface)
    except BaseException:
        sock.close()
        raise
    return sock, max_size


def _open_ipv6(values: Dict[str, Any]) -> Tuple[_socket.socket, int]:
    group = as_str(values["multicast_group"], "multicast_group")
    port = as_port(values["port"])
    max_size, buffer_size = _sizes(values)
    interface_index = as_unsigned(values.get("interface_index", 0), "interface_index", 32)
    family, addr = _net.resolve(group, port)
    if family != _socket.AF_INET6 or not _net.is_multicast(addr[0]):
        raise ValueError(f"multicast_group {group!r} is not an IPv6 multicast address "
                         "(interface_index is for IPv6 groups; use interface_address for IPv4)")
    sock = _net.create_socket(family)
    try:
        _net.set_buffer_size(sock, buffer_size, _net.RECEIVE)
        _net.bind(sock, addr, f"{group}:{port}", reuse=True)
        _net.join_group(sock, addr[0], interface_index=interface_index)
    except BaseException:
        sock.close()
        raise
    return sock, max_size


def _is_socket(value: Any) -> bool:
    return not is_integer(value) and callable(getattr(value, "fileno", None))


def open_udp_socket(*args: Any, **kwargs: Any) -> Tuple[_socket.socket, int]:
    """Create or take the socket for one ``add_udp_reader`` call; returns
    ``(socket, max_size)``.

    The documented forms, told apart as the documented API requires:

    1. ``(port, max_size=DEFAULT_UDP_MAX_SIZE, buffer_size=DEFAULT_UDP_BUFFER_SIZE,
       bind_hostname='')``: binds ``(bind_hostname, port)`` (``''``: every
       IPv4 address), joining a multicast ``bind_hostname``; with the 2016
       ``socket=`` an open, unbound socket of the caller's is bound instead;
    2. ``(socket, max_size=DEFAULT_UDP_MAX_SIZE)``: a socket the caller has
       already bound, used as it is (duplicated);
    3. ``(multicast_group, port, max_size, buffer_size,
       interface_address='0.0.0.0')``: IPv4, the group joined on the
       interface with that address (a unicast ``multicast_group`` must be
       that address);
    4. ``(multicast_group, port, max_size, buffer_size, interface_index=0)``:
       an IPv6 group joined on the interface with that index.

    An integer first argument (or ``port=``) selects form 1, a socket (or
    ``socket=`` without ``port``) form 2, a str (or ``multicast_group=``)
    form 3, unless the fifth argument or ``interface_index=`` is an integer:
    form 4.
    """
    first = args[0] if args else None
    if args and _is_socket(first) or (not args and "socket" in kwargs and "port" not in kwargs):
        return _open_bound(bind_arguments("add_udp_reader", _BOUND_SOCKET, args, kwargs,
                                          ("socket",)))
    if "multicast_group" not in kwargs and not isinstance(first, (str, bytes)):
        return _open_unicast(bind_arguments("add_udp_reader", _UNICAST, args, kwargs, ("port",)))
    if "interface_index" in kwargs and "interface_address" in kwargs:
        raise TypeError("give interface_address (IPv4) or interface_index (IPv6), not both")
    ipv6 = "interface_index" in kwargs or (len(args) > 4 and is_integer(args[4]))
    names = _MULTICAST_IPV6 if ipv6 else _MULTICAST_IPV4
    values = bind_arguments("add_udp_reader", names, args, kwargs, names[:2])
    return _open_ipv6(values) if ipv6 else _open_ipv4(values)


def open_tcp_listener(*args: Any, **kwargs: Any) -> Tuple[_socket.socket, int]:
    """Create or take the listening socket for one ``add_tcp_reader`` call;
    returns ``(socket, max_size)``.

    Forms: ``(port, max_size=DEFAULT_TCP_MAX_SIZE,
    buffer_size=DEFAULT_TCP_BUFFER_SIZE, bind_hostname='')`` listens on
    ``(bind_hostname, port)`` (``''``: every IPv4 address);
    ``(acceptor, max_size=DEFAULT_TCP_MAX_SIZE)`` takes a duplicate of a
    bound, listening IPv4 or IPv6 TCP socket, used as it is. A socket first
    (or ``acceptor=``) selects the second form.
    """
    from ._recv import Stream

    if (args and _is_socket(args[0])) or (not args and "acceptor" in kwargs):
        values = bind_arguments("add_tcp_reader", _TCP_ACCEPTOR, args, kwargs, ("acceptor",))
        max_size = as_nonzero_unsigned(values.get("max_size", Stream.DEFAULT_TCP_MAX_SIZE),
                                       "max_size")
        sock = _net.adopt_socket(values["acceptor"], _socket.SOCK_STREAM, "acceptor")
        if not _net.is_listening(sock):
            sock.close()
            raise ValueError("acceptor must be a listening socket (call listen() first)")
        return sock, max_size
    values = bind_arguments("add_tcp_reader", _TCP_PORT, args, kwargs, ("port",))
    port = as_port(values["port"])
    max_size = as_nonzero_unsigned(values.get("max_size", Stream.DEFAULT_TCP_MAX_SIZE),
                                   "max_size")
    buffer_size = as_unsigned(values.get("buffer_size", Stream.DEFAULT_TCP_BUFFER_SIZE),
                              "buffer_size")
    bind_hostname = as_str(values.get("bind_hostname") or "", "bind_hostname")
    if bind_hostname:
        family, addr = _net.resolve(bind_hostname, port, socktype=_socket.SOCK_STREAM)
    else:
        family, addr = _socket.AF_INET, ("0.0.0.0", port)
    sock = _net.create_socket(family, _socket.SOCK_STREAM)
    try:
        # set before listening: accepted connections inherit it
        _net.set_buffer_size(sock, buffer_size, _net.RECEIVE)
        # a port lately used by another connection (in TIME_WAIT) may be reused
        _net.bind(sock, addr, f"{bind_hostname or '*'}:{port}", reuse=True)
        _net.listen(sock, f"{bind_hostname or '*'}:{port}")
    except BaseException:
        sock.close()
        raise
    return sock, max_size
