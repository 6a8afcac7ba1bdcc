"""One client's RTSP/TCP connection: bytes in, parsed requests out, responses and RTP frames back.

Requests are handled one at a time, in order (RTSP requires responses in request order),
by a task that reads from a bounded queue; interleaved ``$`` frames (RTCP from the client)
bypass the queue. Writes are flow-controlled: when the kernel buffer fills, the pacing
loops of this connection's sessions wait in ``drain``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from streamd.config import ServerConfig
from streamd.limits import Admission, HeadDeadline
from streamd.rtsp.message import InterleavedFrame, Request, Response
from streamd.rtsp.parser import Event, MessageParser, ParseError

log = logging.getLogger(__name__)

MAX_PIPELINED = 16
WRITE_HIGH_WATER = 512 * 1024
WRITE_HARD_LIMIT = 8 * 1024 * 1024  # beyond this the client is not reading: drop it
DRAIN_TIMEOUT = 10.0


class ConnectionOwner(Protocol):
    """What a connection needs from the shell that runs it."""

    config: ServerConfig
    connection_limits: Admission  # connections in total and per client address
    server_header: str
    # takes over a connection whose first request is HTTP (tunnels, pages), when HTTP runs
    http_hand_over: Callable[..., None] | None

    def connection_opened(self, connection: RtspConnection) -> None: ...

    def connection_closed(self, connection: RtspConnection) -> None: ...

    def interleaved_received(self, connection: RtspConnection, frame: InterleavedFrame) -> None: ...

    async def handle(self, connection: RtspConnection, request: Request) -> tuple[Response, Any]: ...


class RtspConnection(asyncio.Protocol):
    def __init__(self, server: ConnectionOwner) -> None:
        self.server = server
        self.parser = MessageParser()
        self.transport: asyncio.Transport | None = None
        self.peer = ("?", 0)
        self.local = ("?", 0)
        self.label = "client ?"
        self.last_activity = 0.0
        self.sessions: set[str] = set()  # ids of sessions set up on this connection
        # over TLS (RTSPS, or a tunnel whose halves are HTTPS): what the encryption policy reads
        self.secure = False
        self._requests: asyncio.Queue[Request | ParseError | None] = asyncio.Queue(MAX_PIPELINED + 1)
        self._worker: asyncio.Task[None] | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self._admitted = self._overflowed = False
        self.head = HeadDeadline(server.config.request_head_timeout)
        self._head_timer: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.secure = transport.get_extra_info("ssl_object") is not None
        peer = transport.get_extra_info("peername") or ("?", 0)
        local = transport.get_extra_info("sockname") or ("?", 0)
        self.peer = (str(peer[0]), int(peer[1]))
        self.local = (str(local[0]), int(local[1]))
        host = f"[{self.peer[0]}]" if ":" in self.peer[0] else self.peer[0]
        self.label = f"client {host}:{self.peer[1]}"
        if not (admitted := self.server.connection_limits.admit(self.peer[0])):
            log.warning("%s: refused: %s", self.label, self.server.connection_limits.refusal(self.peer[0]))
            return transport.close()
        self._admitted = admitted
        self.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self.last_activity = asyncio.get_running_loop().time()
        self._worker = asyncio.get_running_loop().create_task(self._serve(), name=self.label)
        self.server.connection_opened(self)

    def data_received(self, data: bytes) -> None:
        if not self._admitted or self._overflowed:
            return
        now = self.last_activity = asyncio.get_running_loop().time()
        events = self.parser.feed(data)
        self.head.update(self.parser.buffered, bool(events), now)
        self._on_events(events)
        if self.head.due is not None and self._head_timer is None and self.transport is not None:
            self._head_timer = asyncio.get_running_loop().call_at(self.head.due, self._head_check)

    def _head_check(self) -> None:
        self._head_timer = None
        if self.head.expired(asyncio.get_running_loop().time()):
            log.warning("%s: no complete request in %g s; closing", self.label, self.head.timeout)
            self.close()
        elif self.head.due is not None:
            self._head_timer = asyncio.get_running_loop().call_at(self.head.due, self._head_check)

    def _on_events(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, InterleavedFrame):
                self.server.interleaved_received(self, event)
            elif isinstance(event, Request | ParseError):
                http = isinstance(event, Request) and event.version.startswith("HTTP/")
                if http and self._hand_over_http(event):  # type: ignore[arg-type]
                    return  # without an HTTP side it is answered 505 like any other version
                if self._requests.qsize() >= MAX_PIPELINED:  # answer those queued, then 503 and close
                    log.warning("%s: more than %d pipelined requests; closing", self.label, MAX_PIPELINED)
                    event = ParseError(503, f"more than {MAX_PIPELINED} pipelined requests", True, event.cseq)
                    self._overflowed = True  # read nothing more
                self._requests.put_nowait(event)
                if self._overflowed:
                    return
            elif isinstance(event, Response):  # the answer to a request of ours (REDIRECT): just note it
                log.debug("%s: answered our request %s: %d", self.label, event.cseq, event.status)

    def _hand_over_http(self, request: Request) -> bool:
        """Give the socket to the HTTP side (RTSP-over-HTTP tunnels, pages) if there is one.

        ``server.http_hand_over(transport, request, rest)`` is set by ``streamd.http`` when it runs;
        the parser stops after an HTTP request, so ``detach()`` holds every byte not yet parsed.
        """
        hand_over = self.server.http_hand_over
        if hand_over is None or self.transport is None:
            return False
        transport, self.transport = self.transport, None
        if self._worker is not None:
            self._worker.cancel()
        self.server.connection_closed(self)
        hand_over(transport, request, self.parser.detach())
        return True

    def give_away(self, request: Request) -> tuple[asyncio.Transport, bytes] | None:
        """Stop serving this connection (another worker process takes it over, ``request`` first):
        its transport, paused, and the bytes to replay there (``request``, the requests queued
        behind it, what is not parsed yet). None when it cannot be given away (a tunnel's)."""
        transport = self.transport
        if transport is None or transport.is_closing() or transport.get_extra_info("socket") is None:
            return None
        transport.pause_reading()
        pending = [bytes(request)]
        while not self._requests.empty():
            queued = self._requests.get_nowait()
            if isinstance(queued, Request):
                pending.append(bytes(queued))
        pending.append(self.parser.detach())
        self.transport = None
        if self._head_timer is not None:
            self._head_timer.cancel()
        if self._worker is not None:
            self._worker.cancel()
        transport.set_protocol(asyncio.Protocol())
        self.server.connection_closed(self)
        return transport, b"".join(pending)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        if not self._admitted:
            return
        self._writable.set()
        if self._worker is not None:
            self._worker.cancel()
        self.server.connection_closed(self)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # --- writing ----------------------------------------------------------------------------

    def write_bytes(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if self.transport.get_write_buffer_size() > WRITE_HARD_LIMIT:
            log.warning("%s: not reading its data (%d bytes queued); closing", self.label, WRITE_HARD_LIMIT)
            self.close()
            return
        self.transport.write(data)

    async def drain(self) -> None:
        if self._writable.is_set():
            return
        try:
            await asyncio.wait_for(self._writable.wait(), DRAIN_TIMEOUT)
        except TimeoutError:
            log.warning("%s: stalled for %.0f s; closing", self.label, DRAIN_TIMEOUT)
            self.close()

    @property
    def writable(self) -> bool:
        """False while the transport has paused writing: senders should ``drain`` first."""
        return self._writable.is_set()

    @property
    def buffered(self) -> int:
        """Bytes written but not yet taken by the kernel."""
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    @property
    def is_closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    # --- request loop -----------------------------------------------------------------------

    async def _serve(self) -> None:
        while True:
            event = await self._requests.get()
            if isinstance(event, ParseError):
                self._reject(event)
                if event.fatal:
                    self.close()
                    return
                continue
            if event is None:
                return
            response, after = await self.server.handle(self, event)
            self.write_bytes(bytes(response))
            if after is not None:
                after()

    def _reject(self, error: ParseError) -> None:
        log.warning("%s: malformed request: %s (%d)", self.label, error.reason, error.status)
        response = Response(error.status)
        if error.cseq is not None:
            response.headers["CSeq"] = str(error.cseq)
        response.headers["Server"] = self.server.server_header
        self.write_bytes(bytes(response))
