"""The compiled core is built once: every C function of csrc/ lives in
libspead2core.so, and the extension modules link it instead of carrying
copies of their own."""

import pathlib
import shutil
import subprocess

import pytest

import spead2

PACKAGE = pathlib.Path(spead2.__file__).resolve().parent
CORE = PACKAGE / "libspead2core.so"
# start-up code the linker adds to every shared object
CRT_SYMBOLS = {"_init", "_fini", "frame_dummy", "register_tm_clones", "deregister_tm_clones",
               "__do_global_dtors_aux"}


def defined_functions(path):
    out = subprocess.run(["nm", "--defined-only", str(path)], check=True, capture_output=True,
                         text=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "Tt":
            names.add(parts[2])
    return names - CRT_SYMBOLS


@pytest.fixture(scope="module")
def nm():
    if shutil.which("nm") is None:
        pytest.skip("nm (binutils) is not installed")


def test_core_library_is_installed_in_the_package():
    assert CORE.is_file()


def test_extensions_link_the_core_library(nm):
    extensions = [p for p in PACKAGE.rglob("*.so") if p != CORE]
    assert len(extensions) >= 4
    for ext in extensions:
        needed = subprocess.run(["readelf", "-d", str(ext)], check=True, capture_output=True,
                                text=True).stdout
        assert "libspead2core.so" in needed, ext.name


def test_no_core_function_is_defined_twice(nm):
    core = defined_functions(CORE)
    assert {"tpool_create", "spead_decode_packet", "spead_pool_allocator_new"} <= core
    seen = {}
    for ext in sorted(p for p in PACKAGE.rglob("*.so") if p != CORE):
        for name in defined_functions(ext) & core:
            seen.setdefault(name, []).append(ext.name)
    assert seen == {}
