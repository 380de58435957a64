"""Free UDP ports for the tests."""

import socket


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port on ``host`` (IPv4, or IPv6 if it has a colon) that was free a
    moment ago; another process may take it before the test binds it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]
