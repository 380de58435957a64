"""Received heaps through ItemGroup.update: descriptors and values, zero-copy views."""

import numpy as np
import pytest

import spead2
import spead2.recv
from packets import concat, heap_packets, packet


def heap_with(descriptors, values, cnt=1, hab=40, bug_compat=0, packet_payload=1400):
    """Packets of one heap carrying descriptor blobs and (id, bytes) values."""
    flavour = spead2.Flavour(4, 64, hab, bug_compat)
    payload = b""
    items = []
    for d in descriptors:
        items.append((False, spead2.DESCRIPTOR_ID, len(payload)))
        payload += d.to_raw(flavour)
    for item_id, data in values:
        items.append((False, item_id, len(payload)))
        payload += data
    return heap_packets(cnt, payload, packet_payload, items=items, hab=hab)


def receive(tp, data, bug_compat=0):
    s = spead2.recv.Stream(tp, bug_compat=bug_compat)
    s.add_buffer_reader(data)
    return list(s)


def test_descriptors_then_values(thread_pool):
    d = spead2.Descriptor(0x1000, "arr", "an array", (3, 4), dtype=">i2")
    value = np.arange(12, dtype=">i2").reshape(3, 4)
    (heap,) = receive(thread_pool, concat(heap_with([d], [(0x1000, value.tobytes())])))
    ig = spead2.ItemGroup()
    updated = ig.update(heap)
    assert list(updated) == ["arr"]
    got = ig["arr"].value
    assert got.dtype == np.dtype("=i2") and got.dtype.isnative
    np.testing.assert_array_equal(got, value)
    assert ig["arr"].description == "an array"


def test_value_is_a_view_of_the_heap(thread_pool):
    d = spead2.Descriptor(0x1000, "arr", "", (70000,), dtype="<f4")
    value = np.linspace(0, 1, 70000, dtype="<f4")
    (heap,) = receive(thread_pool, concat(heap_with([d], [(0x1000, value.tobytes())],
                                                    packet_payload=8000)))
    ig = spead2.ItemGroup()
    ig.update(heap)
    got = ig["arr"].value
    raw = np.frombuffer(heap.get_items()[-1], np.uint8)
    assert np.shares_memory(got, raw)
    del heap, raw
    np.testing.assert_array_equal(got, value)


def test_format_items_and_immediates(thread_pool):
    ts = spead2.Descriptor(0x1001, "timestamp", "", (), format=[("u", 48)])
    name = spead2.Descriptor(0x1002, "name", "", (None,), format=[("c", 8)])
    flavour = spead2.Flavour(4, 64, 48, 0)
    payload = ts.to_raw(flavour) + name.to_raw(flavour)
    items = [(False, spead2.DESCRIPTOR_ID, 0),
             (False, spead2.DESCRIPTOR_ID, len(ts.to_raw(flavour))),
             (True, 0x1001, 0x123456789ABC), (False, 0x1002, len(payload))]
    payload += b"hello"
    (heap,) = receive(thread_pool, packet(1, payload, 0, len(payload), items, hab=48))
    ig = spead2.ItemGroup()
    ig.update(heap)
    assert ig["timestamp"].value == 0x123456789ABC
    assert ig["name"].value == "hello"


def test_wrong_size_raises_value_error_and_stream_continues(thread_pool):
    d = spead2.Descriptor(0x1000, "x", "", (4,), dtype="u1")
    data = concat(heap_with([d], [(0x1000, b"abc")], cnt=1)
                  + heap_with([], [(0x1000, b"abcd")], cnt=2))
    heaps = receive(thread_pool, data)
    ig = spead2.ItemGroup()
    with pytest.raises(ValueError):
        ig.update(heaps[0])
    ig.update(heaps[1])
    assert bytes(ig["x"].value) == b"abcd"


def test_swap_endian_bug_compat(thread_pool):
    d = spead2.Descriptor(0x1000, "v", "", (2,), dtype="<u4")
    flavour = spead2.Flavour(4, 64, 40, spead2.BUG_COMPAT_SWAP_ENDIAN)
    blob = d.to_raw(flavour)
    # the header claims big-endian while the values travel little-endian
    assert b"'>u4'" in blob
    wire = np.array([1, 2], "<u4").tobytes()
    payload = blob + wire
    items = [(False, spead2.DESCRIPTOR_ID, 0), (False, 0x1000, len(blob))]
    (heap,) = receive(thread_pool, packet(1, payload, 0, len(payload), items),
                      bug_compat=spead2.BUG_COMPAT_SWAP_ENDIAN)
    assert heap.flavour.bug_compat == spead2.BUG_COMPAT_SWAP_ENDIAN
    ig = spead2.ItemGroup()
    ig.update(heap)
    assert ig["v"].value.tolist() == [1, 2]


def test_malformed_descriptor_is_skipped_with_log(thread_pool, caplog):
    payload = b"\x53\x04garbage!" + b"\x01\x02"
    items = [(False, spead2.DESCRIPTOR_ID, 0), (False, 0x1000, 10)]
    (heap,) = receive(thread_pool, packet(1, payload, 0, len(payload), items))
    assert heap.get_descriptors() == []
    assert any("descriptor" in r.message for r in caplog.records)


def test_heap_memory_returns_when_item_group_dies_without_cyclic_gc(thread_pool):
    import gc
    pool = spead2.MemoryPool(1, 1 << 20, 4, 0)
    d = spead2.Descriptor(0x1000, "x", "", (1000,), dtype="u1")
    s = spead2.recv.Stream(thread_pool)
    s.set_memory_allocator(pool)
    s.add_buffer_reader(concat(heap_with([d], [(0x1000, b"y" * 1000)])))
    heaps = list(s)
    gc.disable()
    try:
        ig = spead2.ItemGroup()
        ig.update(heaps[0])
        del heaps
        assert pool.free_buffers == 0  # the value views the heap
        del ig
        assert pool.free_buffers == 1
    finally:
        gc.enable()
