"""Run Python code in a fresh interpreter, bounded in time.

For tests whose failure would be a crash or a hang of the whole process (a
segfault, a loop that never checks for signals, a deadlock at exit): the
child's exit status and output become an ordinary test failure instead of
taking pytest down with them.
"""

import os
import signal
import subprocess
import sys
import textwrap

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def child_env():
    """Environment in which the child imports what this process imports."""
    env = dict(os.environ)
    path = [TESTS_DIR] + [p for p in sys.path if p]
    env["PYTHONPATH"] = os.pathsep.join(path)
    env["PYTHONFAULTHANDLER"] = "1"
    return env


def describe_status(returncode):
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


def run_python(code, timeout=30.0, args=()):
    """Run ``code`` (dedented) with ``python -c``; return the CompletedProcess.

    A child still running after ``timeout`` seconds is killed and the call
    raises ``AssertionError`` with whatever it printed.
    """
    argv = [sys.executable, "-c", textwrap.dedent(code), *map(str, args)]
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env=child_env(), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        raise AssertionError(f"child did not finish within {timeout:.0f} s\n"
                             f"stdout:\n{out or ''}\nstderr:\n{err or ''}") from None


def check_python(code, timeout=30.0, args=()):
    """Like :func:`run_python`, but the child must exit with status 0; returns its stdout."""
    proc = run_python(code, timeout, args)
    assert proc.returncode == 0, (f"child failed ({describe_status(proc.returncode)})\n"
                                  f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc.stdout
