"""Groups of heaps sent with ``send_heaps``, built the same way by both
spead2 implementations (like ``itemsets.py``, this module takes the
``spead2`` module as an argument and imports only numpy).

A *plan* is plain JSON data::

    {"max_packet_size": 200, "cnt_sequence": [next, step] or null,
     "groups": [{"mode": "ROUND_ROBIN" | "SERIAL",
                 "heaps": [{"items": [size, ...], "descriptors": bool,
                            "repeat_pointers": bool, "cnt": int}, ...]}, ...]}

Item ``k`` of a heap is a one-dimensional ``uint8`` array of ``size``
bytes, id ``0x1000 + k``, whose values depend on the heap's place in the
plan; a size of 0 to 4 bytes travels as an immediate (fixed-size items of
at most ``heap_address_bits / 8`` bytes do). ``cnt`` -1 means the stream's
next.
"""

import numpy as np

#: The example of the contract: heaps of 1, 2 and 3 packets (of at most 200
#: bytes: 40 bytes of header, 8 per item pointer).
THREE_HEAPS = [{"items": [100]}, {"items": [250]}, {"items": [400]}]

PLANS = {
    "three-round-robin": {"groups": [{"mode": "ROUND_ROBIN", "heaps": THREE_HEAPS}]},
    "three-serial": {"groups": [{"mode": "SERIAL", "heaps": THREE_HEAPS}]},
    "mixed": {
        "max_packet_size": 104,
        "cnt_sequence": [7, 3],
        "groups": [
            {"mode": "ROUND_ROBIN", "heaps": [
                {"items": [3, 500, 0, 37], "descriptors": True},
                {"items": []},
                {"items": [1000], "cnt": 123},
                {"items": [8, 16, 24], "repeat_pointers": True},
            ]},
            {"mode": "SERIAL", "heaps": [
                {"items": [300, 2], "repeat_pointers": True, "descriptors": True},
                {"items": [64] * 5},
            ]},
            {"mode": "ROUND_ROBIN", "heaps": [{"items": [777]}]},
        ],
    },
    "many-pointers": {
        "max_packet_size": 72,
        "groups": [
            {"mode": "ROUND_ROBIN", "heaps": [{"items": [1] * 9}, {"items": [9] * 7},
                                              {"items": [100, 100]}]},
            {"mode": "SERIAL", "heaps": [{"items": [1] * 9}, {"items": [0] * 3}]},
        ],
    },
}


def _value(plan_index, k, size):
    return ((np.arange(size, dtype=np.uint32) * (k + 3) + plan_index * 17) % 251).astype(np.uint8)


def make_heap(spead2, spec, index):
    """The ``spead2.send.Heap`` of one heap ``spec`` at place ``index``."""
    heap = spead2.send.Heap()
    items = []
    for k, size in enumerate(spec["items"]):
        items.append(spead2.Item(0x1000 + k, f"item{k}", f"item {k}", (size,), dtype=np.uint8,
                                 value=_value(index, k, size)))
    if spec.get("descriptors"):
        for item in items:
            heap.add_descriptor(item)
    for item in items:
        heap.add_item(item)
    heap.repeat_pointers = bool(spec.get("repeat_pointers"))
    return heap


def send_plan(spead2, stream, plan):
    """Send every group of ``plan`` on ``stream``; returns the byte counts."""
    if plan.get("cnt_sequence"):
        stream.set_cnt_sequence(*plan["cnt_sequence"])
    counts = []
    index = 0
    for group in plan["groups"]:
        refs = []
        for spec in group["heaps"]:
            refs.append(spead2.send.HeapReference(make_heap(spead2, spec, index),
                                                  cnt=spec.get("cnt", -1)))
            index += 1
        counts.append(stream.send_heaps(refs, getattr(spead2.send.GroupMode, group["mode"])))
    return counts


def bytes_config(spead2, plan):
    """A ``StreamConfig`` for a BytesStream sending ``plan``."""
    largest = max(len(group["heaps"]) for group in plan["groups"])
    return spead2.send.StreamConfig(max_packet_size=plan.get("max_packet_size", 200),
                                    max_heaps=largest)
