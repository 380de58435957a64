"""The rate limiter of the ``spead2`` logger (spead2._logging), on an injected
clock: no test sleeps."""

import logging

import pytest

import spead2
from spead2._logging import SOURCE_ATTRIBUTE, RateLimitFilter, install, log


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(msg="dropped packet %d", args=(1,), source=None):
    rec = logging.LogRecord("spead2", logging.WARNING, __file__, 1, msg, args, None)
    if source is not None:
        setattr(rec, SOURCE_ATTRIBUTE, source)
    return rec


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def limiter(clock):
    return RateLimitFilter(rate=3, period=1.0, clock=clock)


def passed(limiter, n, source=None):
    return [limiter.filter(record(args=(i,), source=source)) for i in range(n)]


def test_budget_per_period(limiter):
    assert passed(limiter, 5) == [True, True, True, False, False]
    assert limiter.suppressed() == 2


def test_budget_refills_after_the_period(limiter, clock):
    passed(limiter, 4)
    clock.now += 0.999
    assert not limiter.filter(record())
    clock.now += 0.001
    assert passed(limiter, 4) == [True, True, True, False]


def test_sources_have_their_own_budgets(limiter):
    assert passed(limiter, 4, source="stream a") == [True, True, True, False]
    assert passed(limiter, 3, source="stream b") == [True, True, True]
    assert passed(limiter, 3) == [True, True, True]     # records without a source
    assert (limiter.suppressed("stream a"), limiter.suppressed("stream b"),
            limiter.suppressed()) == (1, 0, 0)


def test_next_record_let_through_counts_the_suppressed(limiter, clock):
    passed(limiter, 7, source="s")
    clock.now += 1.0
    rec = record("dropped packet %d from %s", (42, "x"), source="s")
    assert limiter.filter(rec)
    assert rec.getMessage() == "dropped packet 42 from x (4 similar messages suppressed)"
    rec = record(source="s")
    assert limiter.filter(rec) and rec.getMessage() == "dropped packet 1"
    passed(limiter, 3, source="s")
    assert limiter.suppressed("s") == 6
    rec = record(source="s")
    clock.now += 1.0
    assert limiter.filter(rec)
    assert rec.getMessage().endswith(" (2 similar messages suppressed)")


def test_forget(limiter):
    passed(limiter, 5, source="s")
    assert limiter.forget("s") == 2
    assert limiter.suppressed("s") == 0 and limiter.forget("s") == 0
    assert passed(limiter, 3, source="s") == [True, True, True]


def test_suppressed_count_of_an_unknown_source_is_zero(limiter):
    assert limiter.suppressed("never seen") == 0


def test_many_sources_do_not_accumulate(limiter, clock):
    for i in range(1000):
        limiter.filter(record(source=i))
        clock.now += 0.01
    assert len(limiter._budgets) <= 300


def test_installed_once_on_the_spead2_logger():
    logger = logging.getLogger("spead2")
    installed = [f for f in logger.filters if isinstance(f, RateLimitFilter)]
    assert len(installed) == 1
    assert install() is installed[0]
    assert (installed[0].rate, installed[0].period) == (32, 1.0)
    assert spead2._logging.logger is logger


def test_log_helper_limits_library_records(caplog, monkeypatch):
    limiter = install()
    clock = Clock()
    monkeypatch.setattr(limiter, "clock", clock)
    monkeypatch.setattr(limiter, "_budgets", {})
    with caplog.at_level(logging.WARNING, logger="spead2"):
        for i in range(40):
            log(logging.WARNING, "bad heap %d", i, source="test stream")
        log(logging.WARNING, "elsewhere", source="other stream")
        clock.now += 1.0
        log(logging.WARNING, "bad heap %d", 40, source="test stream")
    messages = [r.getMessage() for r in caplog.records]
    assert messages[:32] == [f"bad heap {i}" for i in range(32)]
    assert messages[32:] == ["elsewhere", "bad heap 40 (8 similar messages suppressed)"]


def test_item_group_logs_through_the_limiter(caplog, monkeypatch):
    limiter = install()
    monkeypatch.setattr(limiter, "clock", Clock())
    monkeypatch.setattr(limiter, "_budgets", {})

    class Heap:
        flavour = spead2.Flavour()

        def get_descriptors(self):
            return []

        def get_items(self):
            return [RawItem(0x2000 + i) for i in range(50)]

    class RawItem(bytes):
        def __new__(cls, id):
            obj = super().__new__(cls, b"\0")
            obj.id = id
            return obj

    ig = spead2.ItemGroup()
    with caplog.at_level(logging.DEBUG, logger="spead2"):
        assert ig.update(Heap()) == {}
    unknown = [r for r in caplog.records if "unknown item ID" in r.getMessage()]
    assert len(unknown) == 32
    assert limiter.suppressed(id(ig)) == 18


def test_allows_looks_without_spending(limiter, clock):
    assert limiter.allows("s")
    assert all(passed(limiter, 3, "s"))
    assert not limiter.allows("s")
    assert limiter.allows("other")
    clock.now += 1.0
    assert limiter.allows("s")


def test_suppress_counts_records_never_made(limiter, clock):
    passed(limiter, 3, "s")
    limiter.suppress("s", 40)
    assert limiter.suppressed("s") == 40
    clock.now += 1.0
    r = record(source="s")
    assert limiter.filter(r)
    assert r.getMessage().endswith("(40 similar messages suppressed)")
