"""The type information shipped with the package: the stubs of the compiled
modules agree with them (mypy's stubtest), and a program using the 2016 and
4.x APIs passes ``mypy --strict``, while a wrong call does not."""

import importlib.util
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

HERE = pathlib.Path(__file__).resolve().parent
ALLOWLIST = HERE / "stubtest-allowlist.txt"
EXAMPLE = HERE / "typed_example.py"


def _need_mypy() -> None:
    if importlib.util.find_spec("mypy") is None:
        if os.environ.get("CI"):
            pytest.fail("mypy is not installed, but CI installs it (the test extra)")
        pytest.skip("mypy is not installed (pip install '.[test]' or '.[types]')")


def _run(args, cwd):
    # run from an empty directory, so that only the installed package is seen
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory):
    """One cache for the mypy runs of this module: the second is quicker."""
    return tmp_path_factory.mktemp("mypy_cache")


def _mypy(tmp_path, cache, *files):
    return _run(["mypy", "--strict", "--no-error-summary", "--cache-dir", str(cache),
                 *map(str, files)], tmp_path)


def test_stubs_match_runtime(tmp_path):
    """Every public name of every compiled module is in its stub, with the
    signature it has at run time (entries of the allowlist say why not)."""
    _need_mypy()
    result = _run(["mypy.stubtest", "spead2", "--allowlist", str(ALLOWLIST)], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_example_passes_strict_mypy(tmp_path, mypy_cache):
    _need_mypy()
    result = _mypy(tmp_path, mypy_cache, EXAMPLE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_wrong_calls_are_reported(tmp_path, mypy_cache):
    """The stubs carry real signatures: mistakes are caught, not waved
    through as Any."""
    _need_mypy()
    bad = tmp_path / "bad.py"
    bad.write_text(textwrap.dedent("""\
        import spead2
        import spead2.recv
        import spead2.send

        pool = spead2.ThreadPool(threads="two")
        stream = spead2.send.BytesStream(pool)
        stream.send_heap(spead2.send.Heap(), substream_index="0")
        ring = spead2.recv.ChunkRingbuffer(4)
        ring.put(b"not a chunk")
        received: spead2.recv.Stream = spead2.recv.Stream(pool)
        received.add_buffer_reader(42)
        """))
    result = _mypy(tmp_path, mypy_cache, bad)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = {int(line.split(":")[1]) for line in result.stdout.splitlines() if ": error:" in line}
    assert lines == {5, 7, 9, 11}, result.stdout


def test_example_runs():
    """What the type checker accepts in the example also works."""
    result = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
