"""HeapGenerator and spead2.send.ItemGroup: which descriptors and values go
into each heap."""

import numpy as np
import pytest

import spead2
import spead2.send
from test_send_support import StandInGroup, StandInItem, item_values, reassemble

DESCRIPTOR_ID = 0x05


def heap_contents(heap):
    """(list of raw descriptors, {id: value bytes}) of a one-packet heap."""
    _, pointers, payload = reassemble(list(spead2.send.PacketGenerator(heap, 1, 65000)))
    values = item_values(pointers, payload)
    descriptors = values.pop(DESCRIPTOR_ID, [])
    values.pop(0, None)
    return descriptors, {id: v[0] for id, v in values.items()}


def make_group():
    a = StandInItem(0x1000, b"value-a", variable=True, raw_descriptor=b"desc-a")
    b = StandInItem(0x1001, b"value-b", variable=True, raw_descriptor=b"desc-b")
    return StandInGroup([a, b]), a, b


class TestHeapGenerator:
    def test_first_heap_has_all_descriptors_and_values(self):
        group, a, b = make_group()
        descriptors, values = heap_contents(spead2.send.HeapGenerator(group).get_heap())
        assert descriptors == [b"desc-a", b"desc-b"]
        assert values == {0x1000: b"value-a", 0x1001: b"value-b"}

    def test_second_heap_has_only_changed_values(self):
        group, a, b = make_group()
        gen = spead2.send.HeapGenerator(group)
        gen.get_heap()
        b.version += 1
        assert heap_contents(gen.get_heap()) == ([], {0x1001: b"value-b"})
        assert heap_contents(gen.get_heap()) == ([], {})

    def test_new_item_sends_its_descriptor_and_value(self):
        group, a, b = make_group()
        gen = spead2.send.HeapGenerator(group)
        gen.get_heap()
        group.add(StandInItem(0x1002, b"value-c", variable=True, raw_descriptor=b"desc-c"))
        assert heap_contents(gen.get_heap()) == ([b"desc-c"], {0x1002: b"value-c"})

    def test_replaced_item_is_stale_even_with_same_version(self):
        group, a, b = make_group()
        gen = spead2.send.HeapGenerator(group)
        gen.get_heap()
        replacement = StandInItem(0x1000, b"new-a", variable=True, raw_descriptor=b"new-desc-a",
                                  version=a.version)
        group.add(replacement)
        assert heap_contents(gen.get_heap()) == ([b"new-desc-a"], {0x1000: b"new-a"})

    def test_items_without_value_send_only_descriptors(self):
        item = StandInItem(0x1000, b"", variable=True, value=None, raw_descriptor=b"d")
        heap = spead2.send.HeapGenerator(StandInGroup([item])).get_heap()
        assert heap_contents(heap) == ([b"d"], {})

    @pytest.mark.parametrize("descriptors, data, expected", [
        ("all", "none", ([b"desc-a", b"desc-b"], {})),
        ("none", "all", ([], {0x1000: b"value-a", 0x1001: b"value-b"})),
        ("none", "none", ([], {})),
        ("stale", "stale", ([], {})),
    ])
    def test_modes_after_everything_was_sent(self, descriptors, data, expected):
        group, a, b = make_group()
        gen = spead2.send.HeapGenerator(group)
        gen.get_heap()
        assert heap_contents(gen.get_heap(descriptors, data)) == expected

    def test_none_mode_does_not_mark_anything_sent(self):
        group, a, b = make_group()
        gen = spead2.send.HeapGenerator(group)
        gen.get_heap(descriptors="none", data="none")
        assert heap_contents(gen.get_heap()) == (
            [b"desc-a", b"desc-b"], {0x1000: b"value-a", 0x1001: b"value-b"})

    @pytest.mark.parametrize("kwargs", [{"descriptors": "some"}, {"data": "fresh"}])
    def test_bad_mode(self, kwargs):
        group, a, b = make_group()
        with pytest.raises(ValueError):
            spead2.send.HeapGenerator(group).get_heap(**kwargs)

    def test_descriptor_frequency(self):
        group, a, b = make_group()
        gen = spead2.send.HeapGenerator(group, descriptor_frequency=3)
        counts = [len(heap_contents(gen.get_heap())[0]) for _ in range(7)]
        assert counts == [2, 0, 0, 2, 0, 0, 2]

    def test_add_to_heap_adds_to_an_existing_heap_and_returns_it(self):
        group, a, b = make_group()
        heap = spead2.send.Heap()
        heap.add_start()
        assert spead2.send.HeapGenerator(group).add_to_heap(heap, "all", "none") is heap
        _, pointers, _ = reassemble(list(spead2.send.PacketGenerator(heap, 1, 1472)))
        assert (1, spead2.STREAM_CTRL_ID, spead2.CTRL_STREAM_START) in pointers

    def test_start_and_end_heaps(self):
        gen = spead2.send.HeapGenerator(StandInGroup())
        for heap, ctrl in ((gen.get_start(), spead2.CTRL_STREAM_START),
                           (gen.get_end(), spead2.CTRL_STREAM_STOP)):
            _, pointers, payload = reassemble(list(spead2.send.PacketGenerator(heap, 1, 1472)))
            assert pointers == [(1, spead2.STREAM_CTRL_ID, ctrl), (0, 0, 0)]
            assert payload == b"\0"

    def test_flavour_is_used_for_heaps_and_descriptors(self):
        flavour = spead2.Flavour(4, 64, 48, spead2.BUG_COMPAT_SHAPE_BIT_1)
        group, a, b = make_group()
        gen = spead2.send.HeapGenerator(group, flavour=flavour)
        for heap in (gen.get_heap(), gen.get_start(), gen.get_end()):
            assert heap.flavour == flavour
        assert a.to_raw_flavours == [flavour]

    def test_bad_descriptor_frequency(self):
        with pytest.raises(ValueError):
            spead2.send.HeapGenerator(StandInGroup(), descriptor_frequency=0)


requires_items = pytest.mark.skipif(
    not hasattr(spead2, "ItemGroup"), reason="spead2.ItemGroup (the items layer) is not available")


@requires_items
class TestSendItemGroup:
    def test_is_an_item_group_and_a_heap_generator(self):
        ig = spead2.send.ItemGroup()
        assert isinstance(ig, spead2.ItemGroup)
        assert isinstance(ig, spead2.send.HeapGenerator)

    def test_heaps_track_changes(self):
        ig = spead2.send.ItemGroup()
        item = ig.add_item(0x1000, "x", "an x", (3,), dtype=np.uint16,
                           value=np.array([1, 2, 3], np.uint16))
        descriptors, values = heap_contents(ig.get_heap())
        assert descriptors == [item.to_raw(spead2.Flavour())]
        assert values == {0x1000: np.array([1, 2, 3], np.uint16).tobytes()}
        assert heap_contents(ig.get_heap()) == ([], {})
        item.value = np.array([4, 5, 6], np.uint16)
        assert heap_contents(ig.get_heap()) == ([], {0x1000: np.array([4, 5, 6],
                                                                      np.uint16).tobytes()})

    def test_replacing_an_item_resends_its_descriptor(self):
        ig = spead2.send.ItemGroup()
        ig.add_item(0x1000, "x", "", (None,), format=[("u", 8)], value=[1, 2])
        ig.get_heap()
        new = ig.add_item(0x1000, "x", "changed", (None,), format=[("u", 8)], value=[1, 2])
        descriptors, values = heap_contents(ig.get_heap())
        assert descriptors == [new.to_raw(spead2.Flavour())]
        assert values == {0x1000: b"\x01\x02"}

    def test_descriptor_frequency_and_flavour(self):
        flavour = spead2.Flavour(4, 64, 48)
        ig = spead2.send.ItemGroup(descriptor_frequency=2, flavour=flavour)
        ig.add_item(0x1000, "x", "", (), format=[("u", 32)], value=7)
        heaps = [ig.get_heap() for _ in range(4)]
        assert all(h.flavour == flavour for h in heaps)
        assert [len(heap_contents_48(h)[0]) for h in heaps] == [1, 0, 1, 0]


def heap_contents_48(heap):
    _, pointers, payload = reassemble(list(spead2.send.PacketGenerator(heap, 1, 65000)))
    values = item_values(pointers, payload, 48)
    return values.pop(DESCRIPTOR_ID, []), values
