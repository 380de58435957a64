"""MemoryPool background refills racing with buffers coming back.

A refill runs on the thread pool while the consumer keeps allocating and
releasing; whatever the interleaving, the pool must never hold more than
``max_free`` buffers.
"""

import mmap
import time

import spead2

UPPER = 1 << 20
MAX_FREE = 4


def slow_pool(thread_pool, max_free=MAX_FREE, initial=MAX_FREE, low_water=MAX_FREE):
    # MAP_POPULATE faults in each 1 MiB buffer as it is made, so a refill
    # spends most of its time allocating without the pool lock: that is
    # when released buffers come back under it.
    return spead2.MemoryPool(thread_pool, 0, UPPER, max_free, initial, low_water,
                             allocator=spead2.MmapAllocator(mmap.MAP_POPULATE))


def churn(pool, rounds, per_round, settle=0.005):
    """Allocate and release ``per_round`` buffers ``rounds`` times; returns
    the largest free count seen, sampled continuously for ``settle`` s after
    each round."""
    peak = pool.free_buffers
    for _ in range(rounds):
        bufs = [pool._allocate(UPPER) for _ in range(per_round)]
        del bufs
        end = time.monotonic() + settle
        while time.monotonic() < end:
            peak = max(peak, pool.free_buffers)
    return peak


def wait_quiet(pool, timeout=5.0):
    """Wait until no refill has completed for 50 ms (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    last = pool.refills
    while time.monotonic() < deadline:
        time.sleep(0.05)
        if pool.refills == last:
            return
        last = pool.refills


def test_refill_racing_releases_never_exceeds_max_free(thread_pool):
    # Each round takes the pool below low_water (a refill starts) and then
    # gives every buffer straight back, filling the pool to max_free while
    # the refill is still making buffers of its own.
    pool = slow_pool(thread_pool)
    peak = churn(pool, rounds=100, per_round=MAX_FREE)
    wait_quiet(pool)
    assert pool.refills > 0
    assert peak <= MAX_FREE
    assert pool.free_buffers <= MAX_FREE


def test_refill_on_two_workers_never_exceeds_max_free():
    # Two workers, so that refills which wrongly overlap run at once.
    tp = spead2.ThreadPool(2)
    try:
        pool = slow_pool(tp)
        peak = churn(pool, rounds=100, per_round=2 * MAX_FREE, settle=0.002)
        wait_quiet(pool)
        assert peak <= MAX_FREE
        assert pool.free_buffers <= MAX_FREE
    finally:
        tp.stop()


def test_refill_stops_at_initial_below_max_free(thread_pool):
    # Buffers that stay out never come back, so only refills add to the
    # pool: it must end at ``initial`` (not above, not below).
    pool = slow_pool(thread_pool, max_free=16, initial=3, low_water=3)
    held = []
    peak = 0
    for _ in range(30):
        held.append(pool._allocate(UPPER))
        peak = max(peak, pool.free_buffers)
    wait_quiet(pool)
    assert peak <= 3
    assert pool.free_buffers == 3
    del held
