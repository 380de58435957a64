"""Module-level API: constants, exceptions, flavours, range lists, thread pools, allocators."""

import gc
import os
import threading

import pytest

import spead2
from conftest import wait_for


@pytest.mark.parametrize(
    "name, value",
    [
        ("NULL_ID", 0x00), ("HEAP_CNT_ID", 0x01), ("HEAP_LENGTH_ID", 0x02),
        ("PAYLOAD_OFFSET_ID", 0x03), ("PAYLOAD_LENGTH_ID", 0x04), ("DESCRIPTOR_ID", 0x05),
        ("STREAM_CTRL_ID", 0x06), ("DESCRIPTOR_NAME_ID", 0x10),
        ("DESCRIPTOR_DESCRIPTION_ID", 0x11), ("DESCRIPTOR_SHAPE_ID", 0x12),
        ("DESCRIPTOR_FORMAT_ID", 0x13), ("DESCRIPTOR_ID_ID", 0x14), ("DESCRIPTOR_DTYPE_ID", 0x15),
        ("CTRL_STREAM_START", 0), ("CTRL_DESCRIPTOR_REISSUE", 1), ("CTRL_STREAM_STOP", 2),
        ("CTRL_DESCRIPTOR_UPDATE", 3), ("BUG_COMPAT_DESCRIPTOR_WIDTHS", 1),
        ("BUG_COMPAT_SHAPE_BIT_1", 2), ("BUG_COMPAT_SWAP_ENDIAN", 4),
        ("BUG_COMPAT_PYSPEAD_0_5_2", 7), ("MEMCPY_STD", 0), ("MEMCPY_NONTEMPORAL", 1),
    ],
)
def test_constant_has_documented_value(name, value):
    assert getattr(spead2, name) == value


def test_pyspead_bug_compat_is_all_three_flags():
    assert spead2.BUG_COMPAT_PYSPEAD_0_5_2 == (
        spead2.BUG_COMPAT_DESCRIPTOR_WIDTHS | spead2.BUG_COMPAT_SHAPE_BIT_1
        | spead2.BUG_COMPAT_SWAP_ENDIAN)


def test_recv_defaults():
    import spead2.recv
    assert spead2.recv.DEFAULT_UDP_MAX_SIZE == 9200
    assert spead2.recv.DEFAULT_UDP_BUFFER_SIZE == 8 * 1024 * 1024


@pytest.mark.parametrize("exc", ["Stopped", "Empty"])
def test_exceptions_are_plain_exception_subclasses(exc):
    cls = getattr(spead2, exc)
    assert issubclass(cls, Exception)
    assert not issubclass(cls, (RuntimeError, OSError, ValueError))


class TestFlavour:
    def test_defaults(self):
        f = spead2.Flavour()
        assert (f.version, f.item_pointer_bits, f.heap_address_bits, f.bug_compat) == (4, 64, 40, 0)

    @pytest.mark.parametrize("bits", range(8, 64, 8))
    def test_every_64_xx_flavour_is_accepted(self, bits):
        assert spead2.Flavour(4, 64, bits).heap_address_bits == bits

    @pytest.mark.parametrize("bits", [0, 64, 7, 41, -8, 72])
    def test_bad_heap_address_bits(self, bits):
        with pytest.raises(ValueError):
            spead2.Flavour(4, 64, bits)

    def test_bad_version(self):
        with pytest.raises(ValueError):
            spead2.Flavour(3, 64, 40)

    def test_bad_item_pointer_bits(self):
        with pytest.raises(ValueError):
            spead2.Flavour(4, 48, 40)

    def test_equality_and_hash_by_value(self):
        a = spead2.Flavour(4, 64, 48, 7)
        b = spead2.Flavour(4, 64, 48, spead2.BUG_COMPAT_PYSPEAD_0_5_2)
        assert a == b and not (a != b)
        assert hash(a) == hash(b)
        assert a != spead2.Flavour(4, 64, 48, 0)
        assert a != spead2.Flavour(4, 64, 40, 7)
        assert len({a, b, spead2.Flavour()}) == 2

    def test_read_only(self):
        f = spead2.Flavour()
        with pytest.raises(AttributeError):
            f.heap_address_bits = 48

    def test_keywords(self):
        f = spead2.Flavour(heap_address_bits=48, bug_compat=1)
        assert f.heap_address_bits == 48 and f.bug_compat == 1


class TestParseRangeList:
    def test_documented_example(self):
        assert spead2.parse_range_list("100,4-6,8") == [100, 4, 5, 6, 8]

    def test_empty(self):
        assert spead2.parse_range_list("") == []

    def test_single(self):
        assert spead2.parse_range_list("3") == [3]

    def test_garbage_raises(self):
        with pytest.raises(ValueError):
            spead2.parse_range_list("a-b")


class TestThreadPool:
    def test_default_one_thread(self):
        tp = spead2.ThreadPool()
        assert tp.num_threads == 1
        tp.stop()

    def test_threads_and_affinity(self):
        tp = spead2.ThreadPool(2, [0])
        assert tp.num_threads == 2
        tp.stop()
        assert tp.stopped

    def test_zero_threads_rejected(self):
        with pytest.raises(ValueError):
            spead2.ThreadPool(0)

    def test_negative_cpu_rejected(self):
        with pytest.raises(spead2.RangeError):
            spead2.ThreadPool(1, [-1])

    def test_stop_twice_and_collect(self):
        before = os_threads()
        tp = spead2.ThreadPool(3)
        workers = os_threads() - before
        assert len(workers) == 3
        tp.stop()
        assert tp.stopped
        # the workers end (the kernel may list a joined thread a moment longer)
        assert wait_for(lambda: not workers & os_threads())
        tp.stop()
        assert tp.stopped and tp.num_threads == 3
        del tp
        gc.collect()

    def test_garbage_collection_joins_threads_without_hanging(self):
        done = threading.Event()

        def make_and_drop():
            for _ in range(20):
                spead2.ThreadPool(2)
            gc.collect()
            done.set()

        t = threading.Thread(target=make_and_drop, daemon=True)
        t.start()
        assert done.wait(10)


def os_threads():
    """Kernel thread ids of this process."""
    return set(os.listdir("/proc/self/task"))


class TestAllocators:
    def test_memory_allocator_gives_writable_memory(self):
        buf = spead2.MemoryAllocator()._allocate(1000)
        mv = memoryview(buf)
        assert len(mv) == 1000 and not mv.readonly
        mv[:3] = b"abc"
        assert bytes(mv[:3]) == b"abc"

    def test_mmap_allocator(self):
        buf = spead2.MmapAllocator()._allocate(1 << 20)
        mv = memoryview(buf)
        mv[-1] = 7
        assert mv[-1] == 7
        assert isinstance(spead2.MmapAllocator(0), spead2.MemoryAllocator)

    def test_mmap_allocator_bad_flags_fail_cleanly(self):
        alloc = spead2.MmapAllocator(0x40000000)  # an undefined flag
        try:
            buf = alloc._allocate(4096)
        except MemoryError as exc:
            assert "4096" in str(exc)
        else:
            # mmap(2) ignores flags it does not know: then the memory is usable
            mv = memoryview(buf)
            assert len(mv) == 4096 and not mv.readonly
            mv[-1] = 9
            assert mv[-1] == 9

    def test_memory_pool_plain_signature(self):
        pool = spead2.MemoryPool(100, 1000, 4, 2)
        assert pool.free_buffers == 2
        assert (pool.lower, pool.upper, pool.max_free, pool.initial) == (100, 1000, 4, 2)

    def test_memory_pool_positional_allocator(self):
        pool = spead2.MemoryPool(100, 1000, 4, 2, spead2.MmapAllocator())
        buf = pool._allocate(500)
        assert len(buf) == 500
        assert pool.free_buffers == 1

    def test_memory_pool_serves_range_from_free_list_and_recycles(self):
        pool = spead2.MemoryPool(100, 1000, 4, 2)
        a = pool._allocate(100)
        b = pool._allocate(1000)
        assert pool.free_buffers == 0
        c = pool._allocate(1001)  # outside the range: not from the pool
        del a, b, c
        assert pool.free_buffers == 2

    def test_memory_pool_keeps_at_most_max_free(self):
        pool = spead2.MemoryPool(10, 100, 3, 0)
        bufs = [pool._allocate(50) for _ in range(6)]
        del bufs
        assert pool.free_buffers == 3

    def test_memory_pool_refills_on_thread_pool_below_low_water(self):
        tp = spead2.ThreadPool(1)
        pool = spead2.MemoryPool(tp, 100, 1000, 10, 5, 3)
        assert pool.free_buffers == 5
        held = [pool._allocate(200) for _ in range(3)]  # leaves 2 < low_water
        assert wait_for(lambda: pool.refills >= 1)
        assert pool.free_buffers == 5
        del held
        assert pool.free_buffers == 8
        tp.stop()

    def test_memory_pool_without_thread_pool_never_refills(self, thread_pool):
        pool = spead2.MemoryPool(100, 1000, 10, 2, None)
        assert pool.low_water == 0
        held = [pool._allocate(200) for _ in range(2)]
        # A pool with a thread pool, emptied the same way, refills in the
        # background; once it has, a refill of the other had its chance too.
        control = spead2.MemoryPool(thread_pool, 100, 1000, 10, 2, 2)
        control_held = [control._allocate(200) for _ in range(2)]
        assert wait_for(lambda: control.refills >= 1)
        assert pool.refills == 0 and pool.free_buffers == 0
        del held, control_held
        assert pool.free_buffers == 2

    def test_memory_pool_keywords(self):
        tp = spead2.ThreadPool()
        pool = spead2.MemoryPool(thread_pool=tp, lower=1, upper=10, max_free=2, initial=1,
                                 low_water=0, allocator=spead2.MemoryAllocator())
        assert pool.low_water == 0
        tp.stop()

    @pytest.mark.parametrize("args", [(1, 10, 2), (1, 10, 2, 1, 5, 6, 7)])
    def test_memory_pool_wrong_argument_count(self, args):
        with pytest.raises(TypeError):
            spead2.MemoryPool(*args)

    def test_memory_pool_lower_above_upper(self):
        with pytest.raises(ValueError):
            spead2.MemoryPool(100, 10, 2, 1)

    def test_memory_pool_bad_allocator(self):
        with pytest.raises(TypeError):
            spead2.MemoryPool(1, 10, 2, 1, "not an allocator")

    def test_buffer_outlives_pool_object(self):
        pool = spead2.MemoryPool(10, 100, 2, 1)
        buf = pool._allocate(50)
        del pool
        gc.collect()
        memoryview(buf)[0] = 1
        assert memoryview(buf)[0] == 1
