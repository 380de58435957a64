"""Receive stream for :mod:`asyncio`: ``await stream.get()`` and ``async for``."""

import asyncio
import collections
from typing import Optional

import spead2

from ._recv import Heap
from ._recv import Stream as _BaseStream


class Stream(_BaseStream):
    """A :class:`spead2.recv.Stream` whose :meth:`get` is a coroutine.

    It takes the same arguments (either API generation). Several waiters may
    be pending; they are served in the order they called :meth:`get`.
    Readiness comes from the stream's file descriptor, so no thread is
    blocked and nothing polls. ``loop`` is accepted for 2016 programs and
    ignored: the running loop is used.
    """

    def __init__(self, *args, loop: Optional[asyncio.AbstractEventLoop] = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._waiters: "collections.deque[asyncio.Future]" = collections.deque()
        self._listening_loop: Optional[asyncio.AbstractEventLoop] = None

    def _start_listening(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._listening_loop is None:
            loop.add_reader(self.fd, self._ready)
            self._listening_loop = loop

    def _stop_listening(self) -> None:
        if self._listening_loop is not None:
            self._listening_loop.remove_reader(self.fd)
            self._listening_loop = None

    def _ready(self) -> None:
        while self._waiters:
            fut = self._waiters[0]
            if fut.done():  # cancelled while waiting
                self._waiters.popleft()
                continue
            try:
                heap = _BaseStream.get_nowait(self)
            except spead2.Empty:
                return
            except spead2.Stopped:
                while self._waiters:
                    fut = self._waiters.popleft()
                    if not fut.done():
                        fut.set_exception(spead2.Stopped())
                break
            self._waiters.popleft()
            fut.set_result(heap)
        self._stop_listening()

    async def get(self, loop: Optional[asyncio.AbstractEventLoop] = None) -> Heap:
        """Wait for the next heap; raise :exc:`spead2.Stopped` at the end.
        ``loop`` is ignored (2016 programs pass it)."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0)  # a turn for others, even when a heap is ready
        if not self._waiters:
            try:
                return _BaseStream.get_nowait(self)
            except spead2.Empty:
                pass
        fut = loop.create_future()
        self._waiters.append(fut)
        self._start_listening(loop)
        return await fut

    def get_nowait(self) -> Heap:
        """Return a ready heap or raise :exc:`spead2.Empty`, if no coroutine is waiting."""
        if self._waiters:
            raise spead2.Empty()
        return _BaseStream.get_nowait(self)

    def __aiter__(self):
        return self

    async def __anext__(self) -> Heap:
        try:
            return await self.get()
        except spead2.Stopped:
            raise StopAsyncIteration from None

    def stop(self) -> None:
        super().stop()
        # wake the waiters: the end marker makes the fd readable
        if self._waiters and self._listening_loop is not None:
            self._listening_loop.call_soon(self._ready)
