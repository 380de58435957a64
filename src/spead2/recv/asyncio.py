"""Receiving with :mod:`asyncio`: a receive stream whose ``get`` is a
coroutine, and a chunk ring whose ``get`` and ``put`` are."""

import asyncio
import collections
from typing import Any, Callable, Deque, Optional, Tuple, Type

import spead2

from ._chunks import Chunk
from ._chunks import ChunkRingbuffer as _BaseChunkRingbuffer
from ._recv import Heap
from ._recv import Stream as _BaseStream


class _Waiters:
    """Coroutines waiting, first come first served, for operations that can
    only succeed once a file descriptor is readable.

    Each waiter brings its ``attempt``: a call that returns the result, raises
    ``retry`` (not yet: keep waiting) or raises :exc:`spead2.Stopped`, which
    every waiter then gets. A cancelled waiter passes its turn on. Readiness
    comes from the descriptor, so no thread is blocked and nothing polls.
    """

    def __init__(self, fd: int, retry: Type[Exception]) -> None:
        self._fd = fd
        self._retry = retry
        self._queue: Deque[Tuple[asyncio.Future, Callable[[], Any]]] = collections.deque()
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    def __bool__(self) -> bool:
        return bool(self._queue)

    async def run(self, attempt: Callable[[], Any]) -> Any:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0)  # a turn for others, even when it would succeed at once
        if not self._queue:
            try:
                return attempt()
            except self._retry:
                pass
        fut = loop.create_future()
        self._queue.append((fut, attempt))
        if self._loop is None:
            loop.add_reader(self._fd, self._ready)
            self._loop = loop
        return await fut

    def _ready(self) -> None:
        while self._queue:
            fut, attempt = self._queue[0]
            if fut.done():  # cancelled while waiting
                self._queue.popleft()
                continue
            try:
                result = attempt()
            except self._retry:
                return
            except spead2.Stopped:
                while self._queue:
                    fut, _ = self._queue.popleft()
                    if not fut.done():
                        fut.set_exception(spead2.Stopped())
                break
            self._queue.popleft()
            fut.set_result(result)
        self._stop_listening()

    def _stop_listening(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._loop = None

    def wake(self) -> None:
        """Let the waiters look again soon (after a stop)."""
        if self._queue and self._loop is not None:
            self._loop.call_soon(self._ready)


class Stream(_BaseStream):
    """A :class:`spead2.recv.Stream` whose :meth:`get` is a coroutine.

    It takes the same arguments (either API generation). Several waiters may
    be pending; they are served in the order they called :meth:`get`.
    ``loop`` is accepted for 2016 programs and ignored: the running loop is
    used.
    """

    def __init__(self, *args: Any, loop: Optional[asyncio.AbstractEventLoop] = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._waiters = _Waiters(self.fd, spead2.Empty)

    # a coroutine where the base class has a blocking call, as in spead2
    async def get(  # type: ignore[override]
            self, loop: Optional[asyncio.AbstractEventLoop] = None) -> Heap:
        """Wait for the next heap; raise :exc:`spead2.Stopped` at the end.
        ``loop`` is ignored (2016 programs pass it)."""
        return await self._waiters.run(lambda: _BaseStream.get_nowait(self))

    def get_nowait(self) -> Heap:
        """Return a ready heap or raise :exc:`spead2.Empty`, if no coroutine is waiting."""
        if self._waiters:
            raise spead2.Empty()
        return _BaseStream.get_nowait(self)

    def __aiter__(self) -> "Stream":
        return self

    async def __anext__(self) -> Heap:
        try:
            return await self.get()
        except spead2.Stopped:
            raise StopAsyncIteration from None

    def stop(self) -> None:
        super().stop()
        # the end marker makes the fd readable; wake the waiters in case
        # the loop is not watching it right now
        self._waiters.wake()


class ChunkRingbuffer(_BaseChunkRingbuffer):
    """A :class:`spead2.recv.ChunkRingbuffer` with coroutines: ``await
    get()``, ``await put(chunk)`` and ``async for``. Waiters are served in
    order and tolerate cancellation; when the ring stops, every waiter gets
    :exc:`spead2.Stopped`."""

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)
        self._getters = _Waiters(self.data_fd, spead2.Empty)
        self._putters = _Waiters(self.space_fd, spead2.Full)

    async def get(self) -> Chunk:  # type: ignore[override]  # a coroutine here
        """Wait for a chunk; raise :exc:`spead2.Stopped` once stopped and empty."""
        return await self._getters.run(lambda: _BaseChunkRingbuffer.get_nowait(self))

    async def put(self, chunk: Chunk) -> None:  # type: ignore[override]  # a coroutine here
        """Wait for room, then add ``chunk``; raise :exc:`spead2.Stopped` if
        the ring is stopped."""
        return await self._putters.run(lambda: _BaseChunkRingbuffer.put_nowait(self, chunk))

    def __aiter__(self) -> "ChunkRingbuffer":
        return self

    async def __anext__(self) -> Chunk:
        try:
            return await self.get()
        except spead2.Stopped:
            raise StopAsyncIteration from None

    def stop(self) -> bool:
        stopped = super().stop()
        self._getters.wake()
        self._putters.wake()
        return stopped
