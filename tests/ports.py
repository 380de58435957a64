"""Free UDP and TCP ports for the tests."""

import socket


def _free_port(host: str, socktype: int) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socktype) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port on ``host`` (IPv4, or IPv6 if it has a colon) that was free a
    moment ago; another process may take it before the test binds it."""
    return _free_port(host, socket.SOCK_DGRAM)


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host``, as :func:`free_udp_port`."""
    return _free_port(host, socket.SOCK_STREAM)
