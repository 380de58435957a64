"""Hostile sizes: what a packet or descriptor claims must not decide how much
memory or time the receiver spends.

Bounds documented in the README ("Reliability") and checked here:

- a packet claiming more than ``max_heap_size`` (HEAP_LENGTH or offset +
  length) is rejected before anything is allocated;
- memory held for heaps under assembly is at most ``max_heaps`` heaps of at
  most ``max_heap_size`` bytes each, whatever the packets claim;
- any number of incomplete heaps costs nothing once evicted: each drop is
  counted (``incomplete_heaps_evicted`` / ``incomplete_heaps_flushed``) and
  logged, at most 32 log lines per second per stream, the rest counted in
  ``stats.log_suppressed``;
- a received descriptor cannot make ``ItemGroup.update`` build an unbounded
  value or recurse without bound.
"""

import textwrap

import pytest

from isolated import check_python


class TestHostileShapes:
    """Descriptors whose shapes would make value decoding explode."""

    CHILD = textwrap.dedent("""
        import sys, time
        import spead2, spead2.recv
        from packets import packet

        def receive_and_update(descriptor, value):
            flavour = spead2.Flavour()
            raw = descriptor.to_raw(flavour)
            items = [(False, spead2.DESCRIPTOR_ID, 0), (False, descriptor.id, len(raw))]
            payload = raw + value
            tp = spead2.ThreadPool()
            stream = spead2.recv.Stream(tp)
            stream.add_buffer_reader(packet(1, payload, 0, len(payload), items))
            (heap,) = list(stream)
            ig = spead2.ItemGroup()
            start = time.monotonic()
            try:
                ig.update(heap)
            except ValueError as exc:
                print("ValueError", round(time.monotonic() - start, 1), exc)
            else:
                print("value", repr(ig[descriptor.name].value)[:60])
    """)

    def run(self, code, timeout=60):
        return check_python(self.CHILD + textwrap.dedent(code), timeout=timeout)

    def test_empty_value_with_huge_leading_dimension_is_refused(self):
        # u12 has no numpy equivalent, so the value is nested lists: shape
        # (2**40 - 1, 0) used to build 2**40 - 1 empty lists (hours, then out of memory).
        out = self.run("""
            for shape in [(2**40 - 1, 0), (2**20, 2**20, 0), (2**17, 0)]:
                receive_and_update(spead2.Descriptor(0x1000, "x", "", shape, format=[("u", 12)]),
                                   b"")
        """, timeout=60)
        lines = out.splitlines()
        assert len(lines) == 3
        for line in lines:
            assert line.startswith("ValueError 0.0 an empty value of shape"), line

    def test_empty_value_with_modest_leading_dimensions_is_nested_lists(self):
        out = self.run("""
            receive_and_update(spead2.Descriptor(0x1000, "x", "", (3, 0), format=[("u", 12)]), b"")
            receive_and_update(spead2.Descriptor(0x1000, "x", "", (2, None), format=[("u", 12)]),
                               b"")
        """)
        assert out.splitlines() == ["value [[], [], []]", "value [[], []]"]

    def test_shape_with_thousands_of_dimensions_is_refused(self):
        # The nested lists were built recursively in C: 100000 dimensions of
        # size 1 overflowed the C stack (segfault).
        out = self.run("""
            for ndim in (65, 100000):
                receive_and_update(spead2.Descriptor(0x1000, "x", "", (1,) * ndim,
                                                     format=[("u", 12)]), b"\\x12\\x30")
            receive_and_update(spead2.Descriptor(0x1000, "x", "", (1,) * 64, format=[("u", 12)]),
                               b"\\x12\\x30")
        """, timeout=60)
        lines = out.splitlines()
        assert lines[0] == "ValueError 0.0 shape has 65 dimensions; at most 64 are supported"
        assert lines[1] == "ValueError 0.0 shape has 100000 dimensions; at most 64 are supported"
        assert lines[2].startswith("value " + "[" * 54)
