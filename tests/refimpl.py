"""The reference implementation (PyPI ``spead2==4.5.1``) in its own virtual environment.

The reference also imports as ``spead2``, so it cannot share a process with
ours. It lives in a cached virtual environment, by default
``~/.cache/spead2py/ref-4.5.1`` (override with the ``SPEAD2_REF_VENV``
environment variable), created on first use with pip. Creation is guarded by
a file lock, so concurrent test runs wait for each other instead of building
the same environment twice, and the environment is built under a temporary
name and renamed into place, so a half-built one is never used.

The scripts in ``ref_scripts/`` run under that interpreter; :class:`RefPython`
runs them with timeouts and reads their results. Run this file directly to
create the environment and print its interpreter's path.

This module does not import pytest or spead2, so the benchmarks can use it.
"""

import fcntl
import json
import os
import pickle
import selectors
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REF_VERSION = "4.5.1"
REF_REQUIREMENTS = [f"spead2=={REF_VERSION}", "numpy", "numba", "scipy"]  # numba: chunk place callbacks
VENV_ENV_VAR = "SPEAD2_REF_VENV"
DEFAULT_VENV = Path("~/.cache/spead2py/ref-" + REF_VERSION)
MARKER = "spead2py-ref.json"

TESTS_DIR = Path(__file__).resolve().parent
SCRIPTS_DIR = TESTS_DIR / "ref_scripts"

INSTALL_TIMEOUT = 900.0
LOCK_TIMEOUT = 1200.0
CHECK_TIMEOUT = 60.0


class RefUnavailable(Exception):
    """The reference implementation could not be installed or run."""


class RefScriptError(AssertionError):
    """A reference script failed or timed out."""


class CallTimeout(AssertionError):
    """A call into an implementation did not return in time (see :func:`call_with_timeout`).

    Not an ``OSError`` (unlike the built-in ``TimeoutError``), so code that
    retries on socket errors does not retry a hang.
    """


def venv_dir():
    return Path(os.environ.get(VENV_ENV_VAR) or DEFAULT_VENV).expanduser().resolve()


def _venv_python(directory):
    return Path(directory) / "bin" / "python"


def script_env():
    """The environment for the reference interpreter: none of our import paths."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV",
                        "PYTHONSAFEPATH")}
    env["PYTHONNOUSERSITE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _check(python):
    """``None`` if ``python`` imports the reference spead2 and numpy, else why not."""
    if not python.exists():
        return f"{python} does not exist"
    code = "import spead2, numpy, numba, scipy; print(spead2.__version__)"
    try:
        proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                              timeout=CHECK_TIMEOUT, env=script_env(), cwd=tempfile.gettempdir())
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{python} could not be run: {exc}"
    if proc.returncode != 0:
        return f"{python} cannot import spead2 and numpy: {proc.stderr.strip()[-500:]}"
    version = proc.stdout.strip()
    if version != REF_VERSION:
        return f"{python} has spead2 {version}, not {REF_VERSION}"
    return None


def _run_step(cmd, log, timeout):
    log.write(f"$ {' '.join(map(str, cmd))}\n")
    log.flush()
    try:
        proc = subprocess.run([str(c) for c in cmd], stdout=log, stderr=subprocess.STDOUT,
                              timeout=timeout, cwd=tempfile.gettempdir(), env=script_env())
    except subprocess.TimeoutExpired:
        raise RefUnavailable(f"`{cmd[1:]}` took longer than {timeout:.0f} s")
    except OSError as exc:
        raise RefUnavailable(f"could not run {cmd[0]}: {exc}")
    if proc.returncode != 0:
        log.flush()
        raise RefUnavailable(f"`{' '.join(map(str, cmd[1:]))}` exited with {proc.returncode}")


def _tail(path, n=1500):
    try:
        return Path(path).read_text(errors="replace")[-n:]
    except OSError:
        return ""


def _create(directory, base_python):
    """Build the environment under a temporary name, then rename it to ``directory``."""
    tmp = directory.with_name(f"{directory.name}.building-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    log_path = directory.with_name(directory.name + ".install.log")
    with open(log_path, "w") as log:
        try:
            _run_step([base_python, "-m", "venv", tmp], log, 300.0)
            py = _venv_python(tmp)
            _run_step([py, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
                       "--only-binary", ":all:", *REF_REQUIREMENTS], log, INSTALL_TIMEOUT)
        except RefUnavailable as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RefUnavailable(f"{exc}; pip output (from {log_path}):\n{_tail(log_path)}")
    why = _check(_venv_python(tmp))
    if why is not None:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RefUnavailable(why)
    (tmp / MARKER).write_text(json.dumps({"spead2": REF_VERSION, "base_python": str(base_python),
                                          "created": time.time()}))
    shutil.rmtree(directory, ignore_errors=True)
    os.rename(tmp, directory)


class _FileLock:
    def __init__(self, path, timeout):
        self.path = path
        self.timeout = timeout
        self.fd = None

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(self.fd)
                    raise RefUnavailable(f"timed out after {self.timeout:.0f} s waiting for "
                                         f"another process to finish installing ({self.path})")
                time.sleep(0.5)

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


_cached = None  # (python path or None, reason)
_cache_lock = threading.Lock()


def ensure_ref_python(install=True):
    """Path to the reference interpreter, creating the environment if needed.

    Raises :class:`RefUnavailable` with the reason when that is impossible.
    The outcome is remembered for the rest of the process.
    """
    global _cached
    with _cache_lock:
        if _cached is None:
            try:
                _cached = (_ensure(install), None)
            except RefUnavailable as exc:
                _cached = (None, str(exc))
        python, reason = _cached
    if python is None:
        raise RefUnavailable(reason)
    return python


def _ensure(install):
    directory = venv_dir()
    python = _venv_python(directory)
    if _check(python) is None:
        return python
    if not install:
        raise RefUnavailable(f"no working reference environment at {directory}")
    if directory.exists() and not (directory / MARKER).exists() and any(directory.iterdir()):
        raise RefUnavailable(
            f"{directory} exists but is not a working spead2 {REF_VERSION} environment made by "
            f"these tests; remove it or point {VENV_ENV_VAR} elsewhere")
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RefUnavailable(f"cannot create {directory.parent}: {exc}")
    with _FileLock(str(directory) + ".lock", LOCK_TIMEOUT):
        if _check(python) is None:  # another process built it while we waited
            return python
        _create(directory, sys.executable)
    return python


# ---------------------------------------------------------------------------
# Running scripts.

class RefProcess:
    """A script running in the background (stdout piped, stderr to a file).

    By default it gets the environment for the reference interpreter
    (:func:`script_env`); pass ``env`` to run another interpreter.
    """

    def __init__(self, argv, cwd=None, env=None):
        self.argv = [str(a) for a in argv]
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=self._stderr,
                                     stdin=subprocess.DEVNULL,
                                     env=script_env() if env is None else env,
                                     cwd=cwd or tempfile.gettempdir())
        self._buf = b""

    def readline(self, timeout):
        """The next line of stdout (without the newline); error on timeout or exit."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.kill()
                    raise RefScriptError(f"no output within {timeout:.0f} s from {self._name()}"
                                         f"{self._stderr_text()}")
                if sel.select(left):
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        rc = self.proc.wait(timeout=10)
                        raise RefScriptError(f"{self._name()} exited with {rc} before printing a "
                                             f"line{self._stderr_text()}")
                    self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode()

    def finish(self, timeout, terminate_after=None):
        """Wait for exit; return stdout (after lines already read). Error on failure or timeout.

        With ``terminate_after``, send SIGTERM if the process is still running
        after that many seconds (and then wait up to ``timeout`` more).
        """
        try:
            if terminate_after is not None:
                try:
                    self.proc.wait(timeout=terminate_after)
                except subprocess.TimeoutExpired:
                    self.proc.terminate()
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RefScriptError(f"{self._name()} did not finish within {timeout:.0f} s"
                                 f"{self._stderr_text()}")
        out = (self._buf + (out or b"")).decode(errors="replace")
        self._buf = b""
        if self.proc.returncode != 0:
            raise RefScriptError(f"{self._name()} exited with {self.proc.returncode}"
                                 f"{self._stderr_text()}\nstdout: {out[-1000:]}")
        return out

    def exited(self):
        return self.proc.poll() is not None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def stderr(self):
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def _stderr_text(self):
        text = self.stderr().strip()
        return f"\nstderr:\n{text[-3000:]}" if text else ""

    def _name(self):
        return " ".join(Path(a).name if i < 2 else a for i, a in enumerate(self.argv))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        self._stderr.close()


def _flavour_args(heap_address_bits, bug_compat):
    return ["--heap-address-bits", heap_address_bits, "--bug-compat", bug_compat]


def _sender_args(host, port, itemset, heaps, heap_address_bits, bug_compat, max_packet_size):
    args = ["--host", host, "--port", port, "--itemset", itemset, "--heaps", heaps,
            *_flavour_args(heap_address_bits, bug_compat)]
    if max_packet_size is not None:
        args += ["--max-packet-size", max_packet_size]
    return args


def load_dump(path):
    """Read a receiver script's pickle, with values decoded (see ``itemsets.decode_dump``)."""
    import itemsets
    with open(path, "rb") as f:
        return itemsets.decode_dump(pickle.load(f))


class RefPython:
    """Runs scripts from ``ref_scripts/`` with the reference interpreter."""

    def __init__(self, executable):
        self.executable = Path(executable)

    def argv(self, script, *args):
        return [self.executable, SCRIPTS_DIR / script, *args]

    def run(self, script, *args, timeout=60.0):
        """Run a script to completion; return its stdout. :class:`RefScriptError` on failure."""
        with RefProcess(self.argv(script, *args)) as proc:
            return proc.finish(timeout)

    def start(self, script, *args):
        """Start a script in the background; use it as a context manager to be sure it ends."""
        return RefProcess(self.argv(script, *args))

    # Conveniences over the scripts' command lines.

    def send_bytes(self, path, itemset, heaps, heap_address_bits=40, bug_compat=0,
                   max_packet_size=None, timeout=60.0):
        """Write the reference BytesStream output for ``heaps`` heaps of ``itemset`` to ``path``."""
        args = ["--itemset", itemset, "--heaps", heaps, "--output", path,
                *_flavour_args(heap_address_bits, bug_compat)]
        if max_packet_size is not None:
            args += ["--max-packet-size", max_packet_size]
        self.run("send_bytes.py", *args, timeout=timeout)
        return Path(path).read_bytes()

    def recv_bytes(self, path, output, bug_compat=0, timeout=60.0):
        """Receive the file ``path`` with the reference; return the decoded dump."""
        self.run("recv_bytes.py", "--input", path, "--output", output,
                 "--bug-compat", bug_compat, "--timeout", timeout * 0.8, timeout=timeout)
        return load_dump(output)

    def start_send_udp(self, port, itemset, heaps, heap_address_bits=40, bug_compat=0,
                       host="127.0.0.1", rate=None, max_packet_size=None):
        args = _sender_args(host, port, itemset, heaps, heap_address_bits, bug_compat,
                            max_packet_size)
        if rate is not None:
            args += ["--rate", rate]
        return self.start("send_udp.py", *args)

    def start_send_tcp(self, port, itemset, heaps, heap_address_bits=40, bug_compat=0,
                       host="127.0.0.1", max_packet_size=None):
        """Start the reference TCP sender; it connects to ``host:port``, which
        must be listening already."""
        return self.start("send_tcp.py", *_sender_args(host, port, itemset, heaps,
                                                        heap_address_bits, bug_compat,
                                                        max_packet_size))

    def start_recv_udp(self, output, bug_compat=0, host="127.0.0.1", port=0, timeout=30.0,
                       startup_timeout=30.0):
        """Start the reference UDP receiver; return ``(process, port)`` once it is listening.

        Call ``process.finish(timeout)`` after sending, then :func:`load_dump` on ``output``.
        """
        proc = self.start("recv_udp.py", "--host", host, "--port", port, "--output", output,
                          "--bug-compat", bug_compat, "--timeout", timeout)
        try:
            line = proc.readline(startup_timeout)
            return proc, int(line)
        except BaseException:
            proc.kill()
            raise


def call_with_timeout(fn, timeout, what):
    """Run ``fn()`` in a helper thread; raise :class:`CallTimeout` if it takes over ``timeout`` s.

    Used to bound calls into an implementation that may block forever; a
    thread that overruns is abandoned (it is a daemon).
    """
    result = {}

    def run():
        try:
            result["value"] = fn()
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=run, name=f"bounded:{what}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise CallTimeout(f"{what} did not return within {timeout:.0f} s")
    if "error" in result:
        raise result["error"]
    return result.get("value")


if __name__ == "__main__":
    try:
        print(ensure_ref_python())
    except RefUnavailable as exc:
        print(f"reference spead2 {REF_VERSION} could not be installed: {exc}", file=sys.stderr)
        sys.exit(1)
