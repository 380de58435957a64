"""Thread pool lifetime: a pool released from inside one of its own workers.

A worker may stop its pool (it is then detached rather than joined) and drop
the last reference to it; the worker still has to get back out of its loop
afterwards. Each case runs in a child interpreter, so that a use of freed
memory (reported by AddressSanitizer when the suite runs under it, or a
crash without it) fails the test instead of taking pytest down.
"""

import pytest

from isolated import check_python


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_worker_stops_and_releases_its_own_pool(threads):
    out = check_python(f"""
        import spead2._core as core
        for _ in range(20):
            core._selftest_stop_pool_from_worker({threads})
        print("done")
    """, timeout=60)
    assert out.strip() == "done"
