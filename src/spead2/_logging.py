"""Rate-limited logging for the ``spead2`` logger.

What the library logs about received data (a malformed packet, a heap it
cannot interpret) happens as often as a sender makes it happen, so every
record of the ``spead2`` logger passes one :class:`RateLimitFilter`,
installed when :mod:`spead2` is imported: at most ``rate`` records per
``period`` seconds per source. A source is whatever the code that logs
passes as ``source`` to :func:`log` (a stream, an item group); records
without one share a single budget.
"""

import logging
import threading
import time
from typing import Any, Callable, Dict, Hashable, List, Optional

__all__ = ["RateLimitFilter", "install", "log", "logger", "SOURCE_ATTRIBUTE"]

#: The attribute of a :class:`logging.LogRecord` naming its source.
SOURCE_ATTRIBUTE = "spead2_source"

#: The logger of the library.
logger = logging.getLogger("spead2")

# Sources remembered before idle ones are forgotten.
_PRUNE_AT = 256


class _Budget:
    __slots__ = ("start", "used", "pending", "total")

    def __init__(self, start: float) -> None:
        self.start = start       # when the current period began
        self.used = 0            # records let through in it
        self.pending = 0         # records suppressed since the last one let through
        self.total = 0           # records suppressed in all


class RateLimitFilter(logging.Filter):
    """Lets through at most ``rate`` records per ``period`` seconds for each
    source (the record's ``spead2_source`` attribute; records without it, or
    with ``None``, share one budget).

    A record past the budget is dropped and counted; the next record let
    through for that source carries `` (N similar messages suppressed)`` at
    the end of its message. ``clock`` gives the time in seconds (injected by
    tests). Once more than 256 sources are known, those with no record in
    the last period are forgotten, counts and all.
    """

    def __init__(self, rate: int = 32, period: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        if rate < 1 or not period > 0:
            raise ValueError("rate must be at least 1 and period positive")
        self.rate = rate
        self.period = period
        self.clock = clock
        self._budgets: Dict[Hashable, _Budget] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        source = getattr(record, SOURCE_ATTRIBUTE, None)
        now = self.clock()
        with self._lock:
            budget = self._budgets.get(source)
            if budget is None:
                if len(self._budgets) >= _PRUNE_AT:
                    self._prune(now)
                budget = self._budgets[source] = _Budget(now)
            elif now - budget.start >= self.period:
                budget.start = now
                budget.used = 0
            if budget.used >= self.rate:
                budget.pending += 1
                budget.total += 1
                return False
            budget.used += 1
            suppressed, budget.pending = budget.pending, 0
        if suppressed:
            record.msg = f"{record.getMessage()} ({suppressed} similar messages suppressed)"
            record.args = ()
        return True

    def allows(self, source: Optional[Hashable] = None) -> bool:
        """Whether a record of ``source`` would be let through now (without
        counting it): a caller can then avoid even formatting records that
        would be dropped."""
        now = self.clock()
        with self._lock:
            budget = self._budgets.get(source)
            return (budget is None or now - budget.start >= self.period
                    or budget.used < self.rate)

    def suppress(self, source: Optional[Hashable], n: int) -> None:
        """Count ``n`` records of ``source`` as suppressed without seeing
        them (their producer dropped them because :meth:`allows` said no)."""
        if n <= 0:
            return
        now = self.clock()
        with self._lock:
            budget = self._budgets.get(source)
            if budget is None:
                budget = self._budgets[source] = _Budget(now)
            budget.pending += n
            budget.total += n

    def _prune(self, now: float) -> None:
        """Forget the sources whose period is over."""
        idle: List[Hashable] = [source for source, budget in self._budgets.items()
                                if now - budget.start >= self.period]
        for source in idle:
            del self._budgets[source]

    def suppressed(self, source: Optional[Hashable] = None) -> int:
        """Records of ``source`` suppressed so far (``None``: the records
        without a source)."""
        with self._lock:
            budget = self._budgets.get(source)
            return budget.total if budget is not None else 0

    def forget(self, source: Hashable) -> int:
        """Drop what is known of ``source`` (whose owner is going away);
        returns how many of its records were suppressed."""
        with self._lock:
            budget = self._budgets.pop(source, None)
            return budget.total if budget is not None else 0


def install() -> RateLimitFilter:
    """The :class:`RateLimitFilter` of the ``spead2`` logger, added to it
    (with a ``NullHandler``, so that an application without logging set up
    prints nothing) the first time: when :mod:`spead2` is imported."""
    for existing in logger.filters:
        if isinstance(existing, RateLimitFilter):
            return existing
    logger.addHandler(logging.NullHandler())
    limiter = RateLimitFilter()
    logger.addFilter(limiter)
    return limiter


def log(level: int, msg: str, *args: Any, source: Optional[Hashable] = None) -> None:
    """Log ``msg % args`` on the ``spead2`` logger, rate-limited per ``source``."""
    if logger.isEnabledFor(level):
        logger.log(level, msg, *args, extra={SOURCE_ATTRIBUTE: source}, stacklevel=2)
