"""Sending SPEAD streams from asyncio code.

Heaps are sent by the thread pool's workers; each finished heap is reported
to the event loop through a file descriptor the loop watches, so the workers
never need the GIL.
"""

import asyncio
from typing import Any, Optional

import spead2.send as _send

__all__ = ["UdpStream"]


class UdpStream(_send.UdpStream):
    """A :class:`spead2.send.UdpStream` with asynchronous sending.

    Takes the same arguments, plus ``loop`` (the event loop on which futures
    are resolved; by default the running or current one).
    """

    def __init__(self, *args: Any, loop: Optional[asyncio.AbstractEventLoop] = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loop = loop
        self._futures: "dict[int, asyncio.Future]" = {}
        self._notify_fd: Optional[int] = None
        self._watching: Optional[asyncio.AbstractEventLoop] = None

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:
                self._loop = asyncio.get_event_loop_policy().get_event_loop()
        return self._loop

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._watching is None:
            if self._notify_fd is None:
                self._notify_fd = self._enable_notify()
            loop.add_reader(self._notify_fd, self._process_completions)
            self._watching = loop

    def _unwatch(self) -> None:
        if self._watching is not None:
            self._watching.remove_reader(self._notify_fd)
            self._watching = None

    def _process_completions(self) -> None:
        for token, error, nbytes in self._pop_completions():
            future = self._futures.pop(token, None)
            if future is None or future.done():
                continue
            if error:
                future.set_exception(self._io_error(error))
            else:
                future.set_result(nbytes)
        if not self._futures:
            self._unwatch()

    def async_send_heap(self, heap: _send.Heap, cnt: int = -1) -> "asyncio.Future[int]":
        """Start sending ``heap``; the returned future resolves to the number
        of bytes sent, or fails with ``IOError`` (for instance when
        ``max_heaps`` heaps are already in flight)."""
        loop = self._get_loop()
        future = loop.create_future()
        try:
            token = self._async_send(heap, cnt)
        except OSError as exc:
            future.set_exception(exc)
            return future
        self._futures[token] = future
        self._watch(loop)
        return future

    async def async_flush(self) -> None:
        """Wait until every heap given to :meth:`async_send_heap` so far has
        been sent (successfully or not)."""
        futures = list(self._futures.values())
        if futures:
            await asyncio.wait(futures)
