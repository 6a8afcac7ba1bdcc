"""Messages between the parent and a worker over a ``SOCK_SEQPACKET`` unix socket pair.

A message is a JSON object, optionally with open file descriptors (``SCM_RIGHTS``: a client's
socket handed from one worker to another). Packets keep their boundaries, so a message is one
packet or, when large (a thousand sessions' rows), a run of chunks: the first byte of each says
whether more follow. :class:`Framing` is that sans-I/O part; :class:`Channel` does the I/O on the
event loop and adds requests with replies (``request`` awaits the ``re`` of its ``id``), in both
directions.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

CHUNK = 60_000  # below the default unix socket send buffer, so one packet always fits
MAX_MESSAGE = 64 * 1024 * 1024  # a message larger than this is a bug or an attack: drop the channel
MAX_QUEUED = 64 * 1024 * 1024  # bytes waiting to be sent before the peer is given up on
MAX_FDS = 8
REQUEST_TIMEOUT = 5.0

Message = dict[str, Any]
Handler = Callable[[Message, list[int]], Awaitable[Any]]


class ChannelError(Exception):
    """The peer is gone, did not answer in time, or answered with an error."""


class Framing:
    """Message <-> packets. Sans-I/O: ``encode`` gives packets, ``feed`` takes one at a time."""

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self.max_message = max_message
        self._parts: list[bytes] = []
        self._size = 0

    @staticmethod
    def encode(message: Message) -> list[bytes]:
        data = json.dumps(message, separators=(",", ":")).encode()
        chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)] or [b""]
        return [(b"\x01" if i < len(chunks) - 1 else b"\x00") + c for i, c in enumerate(chunks)]

    def feed(self, packet: bytes) -> Message | None:
        """The message this packet completes, else None; ValueError for what is not ours."""
        if not packet or packet[0] not in (0, 1):
            raise ValueError("not a channel packet")
        self._size += len(packet) - 1
        if self._size > self.max_message:
            raise ValueError(f"message larger than {self.max_message} bytes")
        self._parts.append(packet[1:])
        if packet[0] == 1:
            return None
        data, self._parts, self._size = b"".join(self._parts), [], 0
        message = json.loads(data)
        if not isinstance(message, dict):
            raise ValueError("a message must be a JSON object")
        return message


class Channel:
    """One end of the pair, on the running loop: send, request/reply, and a handler for requests."""

    def __init__(self, sock: socket.socket, handler: Handler, label: str = "channel") -> None:
        sock.setblocking(False)
        self.sock = sock
        self.handler = handler
        self.label = label
        self.closed = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._framing = Framing()
        self._fds: list[int] = []  # descriptors that came with the message being assembled
        self._out: deque[tuple[bytes, list[int]]] = deque()
        self._queued = 0
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop.add_reader(sock.fileno(), self._readable)

    # --- sending ------------------------------------------------------------------------------

    def send(self, message: Message, fds: list[int] | None = None) -> None:
        """Queue ``message`` (descriptors go with its first packet; the caller keeps its own)."""
        if self.closed.is_set():
            return
        packets = Framing.encode(message)
        for i, packet in enumerate(packets):  # our own copies of the descriptors until sent
            self._out.append((packet, [os.dup(fd) for fd in fds or ()] if i == 0 else []))
            self._queued += len(packet)
        if self._queued > MAX_QUEUED:
            log.error("%s: peer is not reading (%d bytes queued); closing", self.label, self._queued)
            self.close()
            return
        self._flush()

    def _flush(self) -> None:
        while self._out:
            packet, fds = self._out[0]
            try:
                if fds:
                    socket.send_fds(self.sock, [packet], fds)
                else:
                    self.sock.send(packet)
            except (BlockingIOError, InterruptedError):
                self._loop.add_writer(self.sock.fileno(), self._writable)
                return
            except OSError as exc:
                log.info("%s: send failed: %s", self.label, exc)
                self.close()
                return
            self._out.popleft()
            self._queued -= len(packet)
            for fd in fds:
                os.close(fd)
        with contextlib.suppress(Exception):
            self._loop.remove_writer(self.sock.fileno())

    def _writable(self) -> None:
        self._flush()

    async def request(
        self, op: str, fds: list[int] | None = None, timeout: float = REQUEST_TIMEOUT, **args: Any
    ) -> Any:
        """Ask the peer; its handler's result (ChannelError when gone, late or failing)."""
        if self.closed.is_set():
            raise ChannelError(f"{self.label}: closed")
        number = next(self._ids)
        future: asyncio.Future[Any] = self._loop.create_future()
        self._waiting[number] = future
        self.send({"id": number, "op": op, **args}, fds)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise ChannelError(f"{self.label}: no answer to {op} in {timeout:g} s") from None
        finally:
            self._waiting.pop(number, None)

    # --- receiving ----------------------------------------------------------------------------

    def _readable(self) -> None:
        for _ in range(64):  # then let the loop breathe
            try:
                data, fds, _flags, _addr = socket.recv_fds(self.sock, CHUNK + 1, MAX_FDS)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.info("%s: receive failed: %s", self.label, exc)
                return self.close()
            if not data and not fds:
                return self.close()  # the peer closed its end
            self._fds += fds
            try:
                message = self._framing.feed(data)
            except ValueError as exc:
                log.error("%s: unreadable message (%s); closing", self.label, exc)
                return self.close()
            if message is not None:
                fds, self._fds = self._fds, []
                self._dispatch(message, fds)

    def _dispatch(self, message: Message, fds: list[int]) -> None:
        if "re" in message:
            for fd in fds:
                os.close(fd)
            future = self._waiting.get(message["re"])
            if future is not None and not future.done():
                if "error" in message:
                    future.set_exception(ChannelError(str(message["error"])))
                else:
                    future.set_result(message.get("ok"))
            return
        task = self._loop.create_task(self._answer(message, fds))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, message: Message, fds: list[int]) -> None:
        number = message.get("id")
        try:
            result = await self.handler(message, fds)
        except Exception as exc:
            if not isinstance(exc, ChannelError):
                log.exception("%s: %s failed", self.label, message.get("op"))
            if number is not None:
                self.send({"re": number, "error": str(exc) or type(exc).__name__})
            return
        if number is not None:
            self.send({"re": number, "ok": result})

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self.sock.fileno())
        with contextlib.suppress(Exception):
            self._loop.remove_writer(self.sock.fileno())
        self.sock.close()
        for fd in [*self._fds, *(fd for _, fds in self._out for fd in fds)]:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._out.clear()
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ChannelError(f"{self.label}: closed"))
        for task in self._tasks:
            task.cancel()
