"""Helpers shared by the command-line tools.

Option parsing (sizes and rates with suffixes, endpoints, flavour flags),
one-line error reporting, logging to stderr, capture files, and the human
formatting of byte counts and rates.
"""

import argparse
import gc
import json
import logging
import mmap
import os
import re
import signal
import socket
import stat
import struct
import sys
import textwrap
from typing import IO, Any, Callable, Dict, List, NamedTuple, NoReturn, Optional, Union

import spead2
from spead2 import _net

_logger = logging.getLogger("spead2")


class ToolError(Exception):
    """A problem the person running the tool can fix; reported as one line."""


class ArgumentParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose usage errors are one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples in the epilog as written, and shows the defaults
    that say something."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.option_strings and action.default not in (None, False, [])
                and action.default is not argparse.SUPPRESS and "default" not in text):
            text += " (default: %(default)s)"
        return text


def make_parser(prog: str, description: str, epilog: str) -> ArgumentParser:
    """A parser for a tool: description wrapped, examples as written."""
    return ArgumentParser(prog=prog, formatter_class=HelpFormatter, epilog=epilog,
                          description=textwrap.fill(description, 79))


# ---------------------------------------------------------------------------
# Option values

_QUANTITY = re.compile(
    r"^\s*(?P<number>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*"
    r"(?P<prefix>[kKMGT]?)(?P<binary>i?)(?P<unit>B?)(?P<per>(?:/s)?)\s*$")
_PREFIX = {"": 0, "k": 1, "K": 1, "M": 2, "G": 3, "T": 4}


def parse_quantity(text: str) -> float:
    """Parse a number with an optional SI (k, M, G, T) or binary (Ki, Mi, Gi,
    Ti) prefix, and an optional ``B`` or ``B/s`` unit: ``100M``, ``1.5GB/s``,
    ``64Ki``, ``9000``."""
    match = _QUANTITY.match(text)
    if match is None or (match.group("binary") and not match.group("prefix")):
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: expected a number with an optional suffix "
            "such as k, M, G (powers of 1000) or Ki, Mi, Gi (powers of 1024)")
    base = 1024 if match.group("binary") else 1000
    return float(match.group("number")) * base ** _PREFIX[match.group("prefix")]


def size_arg(text: str) -> int:
    """A non-negative whole number of bytes, suffixes allowed (``64Ki``)."""
    value = parse_quantity(text)
    if value != int(value):
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: not a whole number")
    return int(value)


def positive_size_arg(text: str) -> int:
    """Like :func:`size_arg`, but at least 1."""
    value = size_arg(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be at least 1")
    return value


def rate_arg(text: str) -> float:
    """A rate in bytes per second (``0`` for unlimited), suffixes allowed."""
    return parse_quantity(text)


def seconds_arg(text: str) -> float:
    """A positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"invalid number of seconds {text!r}: must be > 0")
    return value


_BUG_COMPAT_NAMES = {
    "descriptor-widths": spead2.BUG_COMPAT_DESCRIPTOR_WIDTHS,
    "shape-bit-1": spead2.BUG_COMPAT_SHAPE_BIT_1,
    "swap-endian": spead2.BUG_COMPAT_SWAP_ENDIAN,
    "pyspead-0.5.2": spead2.BUG_COMPAT_PYSPEAD_0_5_2,
}
BUG_COMPAT_HELP = ("PySPEAD bug-compatibility flags: a number (0-7) or a comma-separated list of "
                   + ", ".join(_BUG_COMPAT_NAMES))


def bug_compat_arg(text: str) -> int:
    """Bug-compatibility flags: an integer 0-7 or names such as
    ``swap-endian,shape-bit-1`` (``pyspead-0.5.2`` is all of them)."""
    text = text.strip()
    try:
        value = int(text, 0)
    except ValueError:
        value = 0
        for name in text.split(","):
            name = name.strip().lower()
            if name not in _BUG_COMPAT_NAMES:
                raise argparse.ArgumentTypeError(
                    f"unknown bug-compat flag {name!r} (known: {', '.join(_BUG_COMPAT_NAMES)})"
                ) from None
            value |= _BUG_COMPAT_NAMES[name]
    if not 0 <= value <= spead2.BUG_COMPAT_PYSPEAD_0_5_2:
        raise argparse.ArgumentTypeError(f"invalid bug-compat flags {text!r}: must be 0-7")
    return value


def affinity_arg(text: str) -> List[int]:
    """CPU numbers for the thread pool, as for :func:`spead2.parse_range_list`."""
    try:
        cpus = spead2.parse_range_list(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid CPU list {text!r} (e.g. 0,2-3)") from None
    if any(cpu < 0 for cpu in cpus):
        raise argparse.ArgumentTypeError(f"invalid CPU list {text!r}: negative CPU number")
    return cpus


def rt_priority_arg(text: str) -> int:
    """A SCHED_FIFO priority, 1 to 99."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 99:
        raise argparse.ArgumentTypeError(f"invalid priority {text!r}: a number from 1 to 99")
    return value


def _each_thread(action: Callable[[int], None]) -> None:
    """Apply ``action`` to the id of each thread of this process (threads
    started later inherit what it sets)."""
    try:
        tasks = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tasks = [0]
    for task in tasks:
        try:
            action(task)
        except ProcessLookupError:
            pass   # a thread that has ended meanwhile


def pin_process(cpus: List[int]) -> None:
    """Restrict this process (each of its threads, and those it starts
    later) to ``cpus``."""
    try:
        _each_thread(lambda task: os.sched_setaffinity(task, cpus))
    except (OSError, ValueError) as exc:
        raise ToolError(f"cannot run on CPUs {','.join(map(str, cpus))}: "
                        f"{describe_error(exc)}") from None


def run_realtime(priority: int) -> None:
    """Put this process (each of its threads, and those it starts later)
    under the real-time SCHED_FIFO policy at ``priority``."""
    param = os.sched_param(priority)
    try:
        _each_thread(lambda task: os.sched_setscheduler(task, os.SCHED_FIFO, param))
    except OSError as exc:
        raise ToolError(f"cannot run at real-time priority {priority}: {describe_error(exc)} "
                        "(needs root, CAP_SYS_NICE or an RLIMIT_RTPRIO of at least "
                        f"{priority})") from None


class Endpoint(NamedTuple):
    """A UDP address given on the command line; ``host`` is ``''`` when only
    a port was given."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" if host else str(self.port)

    @property
    def is_multicast(self) -> bool:
        return _net.is_multicast(self.host)

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host


def endpoint_arg(text: str) -> Endpoint:
    """``PORT``, ``HOST:PORT`` or ``[IPV6-ADDRESS]:PORT``."""
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not host:
            raise argparse.ArgumentTypeError(f"invalid address {text!r}: empty host")
    elif ":" in host:
        raise argparse.ArgumentTypeError(
            f"invalid address {text!r}: write IPv6 addresses in brackets, as [ADDRESS]:PORT")
    elif sep and not host:
        raise argparse.ArgumentTypeError(f"invalid address {text!r}: empty host before ':'")
    try:
        port = int(port_text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid address {text!r}: expected [HOST:]PORT with a numeric port") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {port} in {text!r}: must be 1-65535")
    return Endpoint(host, port)


INTERFACE_HELP = ("interface for multicast: its IPv4 address for an IPv4 group, its index or "
                  "name for an IPv6 group")


def multicast_interface(endpoint: Endpoint, interface: Optional[str]) -> Union[str, int]:
    """The interface to use for the multicast group ``endpoint``: an IPv4
    address (``''`` to let the OS choose) or an IPv6 interface index (``0``
    to let the OS choose). An IPv6 interface may be given by name."""
    if not endpoint.is_ipv6:
        if interface is None:
            return ""
        if interface.isdigit():
            raise ToolError(f"--interface {interface}: for an IPv4 multicast group, give the "
                            "address of the interface (e.g. 10.0.0.1), not an index")
        return interface
    if interface is None:
        return 0
    if interface.isdigit():
        return int(interface)
    try:
        return socket.if_nametoindex(interface)
    except OSError:
        raise ToolError(f"--interface {interface}: no network interface of that name") from None


def check_multicast_options(endpoint: Endpoint, interface: Optional[str],
                            ttl: Optional[int] = None) -> None:
    """Reject multicast-only options for a unicast address."""
    if endpoint.is_multicast:
        return
    if interface is not None:
        raise ToolError(f"--interface applies only to multicast groups, and {endpoint.host or '*'}"
                        " is not one")
    if ttl is not None:
        raise ToolError(f"--ttl applies only to multicast groups, and {endpoint.host or '*'} "
                        "is not one")


# ---------------------------------------------------------------------------
# Errors, logging and signals

def describe_error(exc: BaseException) -> str:
    """One line describing ``exc``, without errno prefixes or a traceback."""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
        if exc.filename is not None:
            text = f"{exc.filename}: {text}"
    else:
        text = str(exc) or type(exc).__name__
    text = re.sub(r"\[Errno -?\d+\]\s*", "", text)
    return " ".join(text.split())


class _StderrLogHandler(logging.Handler):
    """Writes log records to stderr as ``PROG: level: message``.

    While a tool is still setting up, records are held back: if set-up fails,
    the one error line is all that is printed.
    """

    def __init__(self, prog: str) -> None:
        super().__init__()
        self.prog = prog
        self.held: List[logging.LogRecord] = []
        self.holding = True
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if self.holding:
            self.held.append(record)
            return
        try:
            sys.stderr.write(f"{self.prog}: {record.levelname.lower()}: {self.format(record)}\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)

    def stop_holding(self) -> None:
        """Print the held records; print later ones as they come."""
        self.holding = False
        held, self.held = self.held, []
        for record in held:
            self.emit(record)


_log_handler: Optional[_StderrLogHandler] = None


def setup_complete() -> None:
    """Set-up succeeded: print the log messages held back so far, and print
    later ones as they come.

    Everything set-up created (imported modules, parsers, the stream) is
    moved out of the garbage collector's view: a full collection would
    otherwise walk all of it, stopping the tool for several milliseconds in
    the middle of a transfer (long enough, at gigabytes per second, for a
    ring or a socket buffer to overflow).
    """
    if _log_handler is not None:
        _log_handler.stop_holding()
    gc.freeze()


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_tool(prog: str, body: Callable[[], int], verbosity: int = 0) -> int:
    """Run a tool's ``body`` and return its exit code.

    Log messages of the ``spead2`` logger go to stderr (warnings and worse;
    ``verbosity`` 1 adds info, 2 debug). SIGTERM is treated like Ctrl-C. A
    :class:`ToolError`, or an error from the library or the OS, is printed as
    one ``PROG: error: ...`` line and gives exit code 1; an interruption that
    ``body`` did not handle gives 130.
    """
    global _log_handler
    handler = _StderrLogHandler(prog)
    _logger.addHandler(handler)
    _logger.setLevel({0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG))
    _log_handler = handler
    try:
        signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread
        pass
    try:
        try:
            code = body()
        finally:
            sys.stdout.flush()
    except BrokenPipeError:
        # whoever read our output has gone (e.g. `| head`); that is not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0
    except KeyboardInterrupt:
        handler.held.clear()
        sys.stderr.write(f"{prog}: interrupted\n")
        return 130
    except (ToolError, OSError, ValueError, OverflowError, MemoryError) as exc:
        handler.held.clear()
        handler.holding = False
        sys.stderr.write(f"{prog}: error: {describe_error(exc)}\n")
        return 1
    finally:
        handler.stop_holding()
        _logger.removeHandler(handler)
        _log_handler = None
    return code


# ---------------------------------------------------------------------------
# Capture files

def read_capture(path: str) -> Union[bytes, mmap.mmap]:
    """The contents of a capture file (``-`` for standard input), memory-mapped
    when it is a regular file."""
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as f:
            info = os.fstat(f.fileno())
            if stat.S_ISREG(info.st_mode):
                if info.st_size == 0:
                    return b""
                return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            return f.read()
    except OSError as exc:
        raise ToolError(f"cannot read {path}: {describe_error(OSError(exc.errno, exc.strerror))}"
                        ) from None


#: What a capture file is: its format, from its first bytes.
CAPTURE_FORMATS = ("pcap", "pcapng", "raw")
_PCAP_MAGICS = frozenset(
    struct.pack(order + "I", magic) for order in "<>"
    for magic in (0xA1B2C3D4, 0xA1B23C4D, 0xA1B2CD34))   # microsecond, nanosecond, modified
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"      # a section header block, in either byte order


def capture_format(head: bytes) -> str:
    """The format of a capture file that starts with ``head`` (its first 4
    bytes or more): ``"pcap"`` (classic, any byte order or timestamp
    resolution), ``"pcapng"``, or ``"raw"`` (SPEAD packets back to back, as
    :class:`spead2.send.BytesStream` writes them; also anything else, whose
    bytes the raw reader skips up to the first packet)."""
    magic = bytes(head[:4])
    if magic in _PCAP_MAGICS:
        return "pcap"
    if magic == _PCAPNG_MAGIC:
        return "pcapng"
    return "raw"


def output_format(path: str, requested: Optional[str]) -> str:
    """The format to write a capture to ``path`` in: ``requested`` if
    given, else raw for standard output (a stream of packets, readable
    while it is written), pcapng for a name ending ``.pcapng`` and pcap
    otherwise."""
    if requested is not None:
        return requested
    if path == "-":
        return "raw"
    return "pcapng" if path.lower().endswith(".pcapng") else "pcap"


def open_output(path: str) -> IO[bytes]:
    """A file to write a capture to (``-`` for standard output)."""
    if path == "-":
        return sys.stdout.buffer
    try:
        return open(path, "wb")
    except OSError as exc:
        raise ToolError(f"cannot write {path}: {describe_error(OSError(exc.errno, exc.strerror))}"
                        ) from None


# ---------------------------------------------------------------------------
# Output

def format_bytes(n: float) -> str:
    """``1234567`` -> ``'1.23 MB'`` (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            break
        n /= 1000
    return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"


def format_rate(bytes_per_second: float) -> str:
    """``2.5e9`` -> ``'2.5 GB/s'``."""
    return format_bytes(bytes_per_second) + "/s"


def print_json(data: Dict[str, Any], out: Optional[IO[str]] = None) -> None:
    """One line of JSON."""
    out = out if out is not None else sys.stdout
    out.write(json.dumps(data, sort_keys=False) + "\n")
    out.flush()


def add_verbosity_arg(parser: Union[argparse.ArgumentParser,
                                   "argparse._ArgumentGroup"]) -> None:
    """``-v``/``--verbose``, for :func:`run_tool`."""
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more from the spead2 logger (-v info, -vv debug)")
