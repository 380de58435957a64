"""spead2 4.x additions to the shared classes: ``ThreadPool.set_affinity``,
``MmapAllocator(prefer_huge=...)`` and ``MemoryPool.warn_on_empty``."""

import logging
import os
import threading
from pathlib import Path

import numpy as np
import pytest

import spead2
import spead2.recv
import spead2.send

EMPTY_MESSAGE = "memory pool is empty when allocating"


def run_in_thread(fn):
    """Run ``fn`` on a new thread; returns its result (or raises its error)."""
    out = {}

    def body():
        try:
            out["value"] = fn()
        except BaseException as exc:   # handed to the caller
            out["error"] = exc

    t = threading.Thread(target=body)
    t.start()
    t.join(30)
    assert not t.is_alive()
    if "error" in out:
        raise out["error"]
    return out["value"]


# ---- ThreadPool.set_affinity ------------------------------------------------

def test_set_affinity_pins_only_the_calling_thread():
    allowed = os.sched_getaffinity(0)
    core = max(allowed)

    def pin():
        spead2.ThreadPool.set_affinity(core)
        return os.sched_getaffinity(0)

    assert run_in_thread(pin) == {core}
    assert os.sched_getaffinity(0) == allowed


@pytest.mark.parametrize("core", [1 << 20, -1])
def test_set_affinity_bad_core_logs_a_warning(caplog, core):
    allowed = os.sched_getaffinity(0)

    def pin():
        with caplog.at_level(logging.WARNING, logger="spead2"):
            spead2.ThreadPool.set_affinity(core)
        return os.sched_getaffinity(0)

    assert run_in_thread(pin) == allowed
    assert any(f"CPU {core}" in r.getMessage() for r in caplog.records
               if r.name == "spead2" and r.levelno == logging.WARNING)


@pytest.mark.parametrize("core", ["0", 1.0, None, True])
def test_set_affinity_needs_an_integer(core):
    with pytest.raises(TypeError):
        spead2.ThreadPool.set_affinity(core)


def test_set_affinity_is_static():
    # callable on the class and on an instance alike
    tp = spead2.ThreadPool()
    core = min(os.sched_getaffinity(0))
    assert run_in_thread(lambda: (tp.set_affinity(core), os.sched_getaffinity(0))[1]) == {core}
    tp.stop()


# ---- MmapAllocator(prefer_huge) ---------------------------------------------

def vm_flags(address):
    """The VmFlags of the mapping of this process that holds ``address``."""
    flags = None
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and ":" not in head:
            lo, hi = (int(x, 16) for x in head.split("-"))
            inside = lo <= address < hi
        elif inside and line.startswith("VmFlags:"):
            flags = line.split()[1:]
    return flags


def buffer_address(buf):
    return np.frombuffer(buf, np.uint8).ctypes.data


def test_mmap_allocator_arguments():
    assert spead2.MmapAllocator().prefer_huge is False
    assert spead2.MmapAllocator(0, True).prefer_huge is True
    assert spead2.MmapAllocator(prefer_huge=True).prefer_huge is True
    with pytest.raises(TypeError):
        spead2.MmapAllocator(0, True, 3)


@pytest.mark.skipif(not Path("/sys/kernel/mm/transparent_hugepage").exists(),
                    reason="this kernel has no transparent huge pages")
def test_prefer_huge_asks_for_huge_pages():
    size = 8 << 20
    plain = spead2.MmapAllocator()._allocate(size)
    huge = spead2.MmapAllocator(prefer_huge=True)._allocate(size)
    plain_flags = vm_flags(buffer_address(plain))
    huge_flags = vm_flags(buffer_address(huge))
    assert plain_flags is not None and huge_flags is not None
    # hugetlbfs pages ("ht") where the system reserved some, else THP asked for ("hg")
    assert {"ht", "hg"} & set(huge_flags)
    assert not {"ht", "hg"} & set(plain_flags)
    # the memory is usable to its last byte
    view = np.frombuffer(huge, np.uint8)
    view[:] = 7
    assert view[0] == 7 and view[-1] == 7 and len(view) == size


def heap_bytes(n_heaps, size):
    """A stream of ``n_heaps`` heaps, each with one ``size``-byte item."""
    stream = spead2.send.BytesStream(spead2.ThreadPool())
    ig = spead2.send.ItemGroup()
    ig.add_item(0x1000, "data", "payload", (size,), np.uint8)
    for i in range(n_heaps):
        ig["data"].value = np.full(size, i % 251, np.uint8)
        stream.send_heap(ig.get_heap())
    return stream.getvalue()


def receive_values(allocator, data):
    stream = spead2.recv.Stream(spead2.ThreadPool(), spead2.recv.StreamConfig(),
                                spead2.recv.RingStreamConfig())
    stream.set_memory_allocator(allocator)
    stream.add_buffer_reader(data)
    ig = spead2.ItemGroup()
    values = []
    for heap in stream:
        ig.update(heap)
        values.append(ig["data"].value.copy())
    return values


def test_prefer_huge_allocator_receives_heaps():
    values = receive_values(spead2.MmapAllocator(prefer_huge=True), heap_bytes(5, 3 << 20))
    assert [int(v[0]) for v in values] == list(range(5))
    assert all((v == v[0]).all() and len(v) == 3 << 20 for v in values)


# ---- MemoryPool.warn_on_empty -----------------------------------------------

def empty_warnings(caplog):
    return [r for r in caplog.records
            if r.name.startswith("spead2") and EMPTY_MESSAGE in r.getMessage()]


def test_warn_on_empty_attribute():
    pool = spead2.MemoryPool(0, 1 << 20, 4, 2)
    assert pool.warn_on_empty is True
    pool.warn_on_empty = False
    assert pool.warn_on_empty is False
    pool.warn_on_empty = True
    assert pool.warn_on_empty is True


def test_empty_pool_logs_through_the_stream(caplog):
    pool = spead2.MemoryPool(0, 1 << 20, 0, 0)   # never holds a buffer
    with caplog.at_level(logging.WARNING, logger="spead2"):
        values = receive_values(pool, heap_bytes(3, 10000))
    assert len(values) == 3
    records = empty_warnings(caplog)
    assert records and all(r.levelno == logging.WARNING for r in records)
    assert f"{EMPTY_MESSAGE} " in records[0].getMessage()
    # the size asked for is the heap's payload, within the pool's range
    size = int(records[0].getMessage().rsplit(EMPTY_MESSAGE, 1)[1].split()[0])
    assert 10000 <= size <= 1 << 20


def test_warn_on_empty_false_is_silent(caplog):
    pool = spead2.MemoryPool(0, 1 << 20, 0, 0)
    pool.warn_on_empty = False
    with caplog.at_level(logging.WARNING, logger="spead2"):
        values = receive_values(pool, heap_bytes(3, 10000))
    assert len(values) == 3
    assert empty_warnings(caplog) == []


def test_a_stocked_pool_does_not_warn(caplog):
    pool = spead2.MemoryPool(0, 1 << 20, 8, 8)
    with caplog.at_level(logging.WARNING, logger="spead2"):
        values = receive_values(pool, heap_bytes(3, 10000))
    assert [int(v[0]) for v in values] == [0, 1, 2]
    assert empty_warnings(caplog) == []
