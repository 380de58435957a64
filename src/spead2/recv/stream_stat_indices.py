"""Indices of the core statistics in a :class:`spead2.recv.StreamStats`,
under their upper-cased names. Custom statistics start at ``CUSTOM``.

The order is that of csrc/stats.h; the check at the bottom keeps the two in
step.
"""

from ._recv import CORE_STATS as _CORE_STATS

HEAPS = 0
INCOMPLETE_HEAPS_EVICTED = 1
INCOMPLETE_HEAPS_FLUSHED = 2
PACKETS = 3
BATCHES = 4
MAX_BATCH = 5
SINGLE_PACKET_HEAPS = 6
SEARCH_DIST = 7
WORKER_BLOCKED = 8
# beyond spead2: what the receiver drops, by reason
BAD_PACKETS = 9
REJECTED_PACKETS = 10
DUPLICATE_PACKETS = 11
TOO_LARGE_PACKETS = 12
BYTES = 13
LOG_SUPPRESSED = 14
# beyond spead2: payloads received straight into heap memory
DIRECT_PACKETS = 15
CUSTOM = 16

for _index, (_name, _mode) in enumerate(_CORE_STATS):
    if globals().get(_name.upper()) != _index:
        raise ImportError(f"stream_stat_indices.{_name.upper()} is out of step with csrc/stats.h")
if CUSTOM != len(_CORE_STATS):
    raise ImportError("stream_stat_indices.CUSTOM is out of step with csrc/stats.h")
del _index, _name, _mode
