"""A worker's client socket: TLS clients' connections forwarded by a sibling (:mod:`.pipe`).

A second unix socket beside the siblings' one (:mod:`.internal`), in the same 0700 folder. The
two are kept apart on purpose: what arrives on the siblings' socket is a worker and is trusted;
what arrives here is a client, relayed byte for byte, and is served exactly as if it had connected
here: its :mod:`.preamble` (written by the forwarding worker before any byte of the client's) gives
the address it is authorized, limited and bound to a session by, and whether it came over TLS
(the encryption policy reads it). A connection without a valid preamble is closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from streamd.rtsp.message import Request
from streamd.rtsp.parser import MessageParser
from streamd.workers.preamble import Preamble, PreambleError, parse
from streamd.workers.presented import FORWARDED_TLS, Presented

log = logging.getLogger("streamd")

ARRIVAL_TIMEOUT = 5.0  # seconds for the preamble (and a tunnel POST's head): the sibling sends them at once

ServeRtsp = Callable[[asyncio.Transport, bytes], None]
ServeTunnel = Callable[[asyncio.Transport, Request, bytes], None]


def socket_path(run_dir: Path, index: int) -> Path:
    return run_dir / f"worker-{index}.clients.sock"


def present(transport: asyncio.Transport, preamble: Preamble) -> Presented:
    """The connection as the client made it: its addresses, and TLS if it came over TLS."""
    extras = {
        "peername": preamble.client,
        "sockname": preamble.local,
        "ssl_object": FORWARDED_TLS if preamble.secure else None,
    }
    return Presented(transport, extras)


class Arrival(asyncio.Protocol):
    """A forwarded connection until it can be served: its preamble, then (a tunnel's POST) its
    request head; then the RTSP or tunnel code takes the transport over."""

    def __init__(self, rtsp: ServeRtsp, tunnel: ServeTunnel) -> None:
        self._rtsp = rtsp
        self._tunnel = tunnel
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.presented: Presented | None = None
        self.parser: MessageParser | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._timer = asyncio.get_running_loop().call_later(ARRIVAL_TIMEOUT, self._late)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if self.presented is None:
            self.buffer += data
            try:
                parsed = parse(self.buffer)
            except PreambleError as exc:
                return self._refuse(str(exc))
            if parsed is None:
                return None
            preamble, used = parsed
            data = bytes(self.buffer[used:])
            self.buffer.clear()
            self.presented = present(self.transport, preamble)
            log.debug("client %s:%d: forwarded by a sibling worker (%s)", *preamble.client, preamble.kind)
            if preamble.kind == "rtsp":
                self._served()
                return self._rtsp(self.presented, data)
            self.parser = MessageParser()
        assert self.parser is not None
        for event in self.parser.feed(data):
            if not isinstance(event, Request):
                return self._refuse(f"a forwarded tunnel connection must start with its request: {event}")
            self._served()
            return self._tunnel(self.presented, event, self.parser.detach())
        if self.parser.failed:
            self._refuse("unreadable forwarded tunnel request")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._served()

    def _served(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _late(self) -> None:
        self._timer = None
        self._refuse(f"nothing to serve in {ARRIVAL_TIMEOUT:g} s")

    def _refuse(self, why: str) -> None:
        log.warning("forwarded connection refused: %s", why)
        self._served()
        if self.transport is not None:
            self.transport.abort()


async def listen(path: Path, rtsp: ServeRtsp, tunnel: ServeTunnel) -> asyncio.AbstractServer:
    path.unlink(missing_ok=True)  # left by a worker that died
    loop = asyncio.get_running_loop()
    return await loop.create_unix_server(lambda: Arrival(rtsp, tunnel), str(path))
