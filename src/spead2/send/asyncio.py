"""Sending SPEAD streams from asyncio code.

Heaps are sent by the thread pool's workers; each finished send is reported
to the event loop through a file descriptor the loop watches, so the workers
never need the GIL.

``async_send_heap`` and ``async_send_heaps`` are not coroutines: they queue
at once (so sends go out in the order of the calls) and return an
:class:`asyncio.Future` whose result is the number of bytes sent. A send
that cannot be queued or fails in transmission sets the future's
exception; only a heap that cannot be split into packets (``ValueError``)
is raised by the call itself. Cancelling a future does not cancel its send.
"""

import asyncio
from typing import TYPE_CHECKING, Any, List, Optional, Tuple

import spead2 as _spead2
import spead2.send as _send

__all__ = ["UdpStream", "TcpStream", "InprocStream", "BytesStream", "UdpIbvStream"]


if TYPE_CHECKING:
    _StreamBase = _send.Stream
else:
    _StreamBase = object


class _AsyncStream(_StreamBase):
    """Asynchronous sending for a :class:`spead2.send.Stream` subclass.

    ``loop`` is accepted for the 2016 API; futures belong to the running
    loop, or (called outside one) to ``loop`` or the current loop.
    """

    def __init__(self, *args: Any, loop: Optional[asyncio.AbstractEventLoop] = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fallback_loop = loop
        # token -> future, in the order the sends were queued
        self._futures: "dict[int, asyncio.Future]" = {}
        self._notify_fd: Optional[int] = None
        self._watching: Optional[asyncio.AbstractEventLoop] = None
        # (token, waiter) of async_flush calls, and the last token queued
        self._flushers: "List[Tuple[int, asyncio.Future]]" = []
        self._last_token = 0
        self._completed_token = 0

    def _loop(self) -> asyncio.AbstractEventLoop:
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            if self._fallback_loop is not None:
                return self._fallback_loop
            return asyncio.get_event_loop_policy().get_event_loop()

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._watching is loop:
            return
        self._unwatch()
        if self._notify_fd is None:
            self._notify_fd = self._enable_notify()
        loop.add_reader(self._notify_fd, self._process_completions)
        self._watching = loop

    def _unwatch(self) -> None:
        if self._watching is not None:
            if not self._watching.is_closed():
                self._watching.remove_reader(self._notify_fd)  # type: ignore[arg-type]
            self._watching = None

    def _process_completions(self) -> None:
        for token, error, nbytes in self._pop_completions():
            self._completed_token = token
            future = self._futures.pop(token, None)
            if future is None or future.done():   # cancelled: nothing to say
                continue
            if error:
                future.set_exception(self._io_error(error))
            else:
                future.set_result(nbytes)
        while self._flushers and self._flushers[0][0] <= self._completed_token:
            waiter = self._flushers.pop(0)[1]
            if not waiter.done():
                waiter.set_result(None)
        if not self._futures and not self._flushers:
            self._unwatch()

    def _queued(self, loop: asyncio.AbstractEventLoop, queue: Any) -> "asyncio.Future[int]":
        future = loop.create_future()
        try:
            token = queue()
        except OSError as exc:
            # without its traceback, whose frames hold the future: a cycle
            # would leave an unretrieved future to the garbage collector,
            # which reports it at an arbitrary later moment
            future.set_exception(exc.with_traceback(None))
            return future
        self._last_token = token
        self._futures[token] = future
        self._watch(loop)
        return future

    def async_send_heap(self, heap: _send.Heap, cnt: int = -1, substream_index: int = 0,
                        rate: float = -1.0) -> "asyncio.Future[int]":
        """Queue ``heap``; the future's result is the number of bytes sent
        (see :meth:`spead2.send.Stream.send_heap` for the arguments)."""
        return self._queued(self._loop(), lambda: self._async_send_heap(
            heap, cnt, substream_index, rate))

    def async_send_heaps(self, heaps: Any, mode: _send.GroupMode) -> "asyncio.Future[int]":
        """Queue a group of heaps (see :meth:`spead2.send.Stream.send_heaps`);
        it counts as its heaps against ``max_heaps``. The future's result is
        the bytes sent for the whole group."""
        return self._queued(self._loop(), lambda: self._async_send_heaps(heaps, mode))

    async def async_flush(self) -> None:
        """Wait until the most recently queued send has finished, whether it
        succeeded or not (and whether or not its future was cancelled)."""
        token = self._last_token
        if token <= self._completed_token:   # also when nothing was ever queued
            return
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._flushers.append((token, waiter))
        self._watch(loop)
        # a completion may already be waiting on the file descriptor
        self._process_completions()
        await asyncio.shield(waiter)


class UdpStream(_AsyncStream, _send.UdpStream):
    """:class:`spead2.send.UdpStream` (any of its forms) with asynchronous
    sending."""


class InprocStream(_AsyncStream, _send.InprocStream):
    """:class:`spead2.send.InprocStream` with asynchronous sending."""


class BytesStream(_AsyncStream, _send.BytesStream):
    """:class:`spead2.send.BytesStream` with asynchronous sending."""


class UdpIbvStream(_AsyncStream, _send.UdpIbvStream):
    """:class:`spead2.send.UdpIbvStream` with asynchronous sending (which
    fails as that does, without ibverbs support)."""


class TcpStream(_AsyncStream, _send.TcpStream):
    """:class:`spead2.send.TcpStream` with asynchronous sending.

    ``TcpStream(thread_pool, socket, config=StreamConfig())`` takes a
    connected socket; :meth:`connect` makes the connection without blocking
    the event loop.
    """

    @classmethod
    async def connect(cls, thread_pool: "_spead2.ThreadPool", endpoints: Any,
                      config: Optional[_send.StreamConfig] = None,
                      buffer_size: int = _send.TcpStream.DEFAULT_BUFFER_SIZE,
                      interface_address: str = "", *,
                      loop: Optional[asyncio.AbstractEventLoop] = None) -> "TcpStream":
        """Connect to the one endpoint (a list of one ``(host, port)``
        pair) and return a stream on the connection; a failed connection
        raises the ``OSError`` subclass (``ConnectionRefusedError``...)."""
        sock, sockaddr = _send._tcp_socket(endpoints, buffer_size, interface_address)
        with sock:
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, sockaddr)
            return cls(thread_pool, sock, config)

