"""The documentation site builds without a single warning: every page, and
the API reference generated from the docstrings of the installed package
(so a docstring that is not valid reStructuredText fails here)."""

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"


def test_sphinx_build_has_no_warnings(tmp_path):
    missing = [name for name in ("sphinx", "myst_parser") if importlib.util.find_spec(name) is None]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{', '.join(missing)} not installed, but CI installs them (the test extra)")
        pytest.skip(f"{', '.join(missing)} not installed (pip install '.[docs]')")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    html = tmp_path / "html"
    for page in ("index", "installation", "scale-out", "migrating", "architecture",
                 "tutorials/receive", "tutorials/send", "tutorials/asyncio",
                 "tutorials/chunking", "tutorials/captures", "api/recv"):
        assert (html / f"{page}.html").is_file(), page
    # the reference covers the compiled modules too, with their docstrings
    recv = (html / "api" / "recv.html").read_text()
    for name in ("spead2.recv.Stream.add_udp_reader", "spead2.recv.ChunkRingStream",
                 "spead2.recv.ChunkPlacement", "spead2.recv.StreamStats"):
        assert f'id="{name}"' in recv, name
    send = (html / "api" / "send.html").read_text()
    assert 'id="spead2.send.Stream.send_heaps"' in send
