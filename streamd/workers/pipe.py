"""Forwarding a TLS client's decrypted bytes to the sibling worker that serves it.

A plain TCP connection that must be served by another worker is handed over as a socket
(``SCM_RIGHTS``); a TLS one cannot be: its TLS state lives in the worker that terminated it. That
worker keeps the client's connection and opens one to the sibling's client socket
(:mod:`.forwarded`): a :mod:`.preamble` line saying who the client is, the bytes already read,
then a :class:`Pipe` carrying bytes both ways until either side ends.

Each direction is bounded: a side whose transport holds more than :data:`HIGH_WATER` bytes not
yet sent stops the other side's reading until it is down to :data:`LOW_WATER` (at most one more
read, 256 KiB, may land on top). When one side ends, the other is closed too (what it holds is
flushed first, for at most :data:`CLOSE_GRACE` seconds).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from streamd.workers.preamble import Preamble

log = logging.getLogger("streamd")

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
CLOSE_GRACE = 10.0  # seconds a closing side may take to flush before it is aborted


class _End(asyncio.Protocol):
    """One side of a pipe: what its transport reads goes to the other side's transport."""

    def __init__(self, pipe: Pipe, name: str) -> None:
        self.pipe = pipe
        self.name = name
        self.transport: asyncio.Transport | None = None
        self.received = 0  # bytes read from this side
        self.lost = False
        self.paused = False  # reading stopped because the other side is full

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self.pipe.carry(self, data)

    def eof_received(self) -> bool:
        self.pipe.close(f"the {self.name} ended")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.pipe.close(f"the {self.name} ended" + (f" ({exc})" if exc else ""))

    def pause_writing(self) -> None:  # our transport holds HIGH_WATER: the other side waits
        self.pipe.other(self).pause()

    def resume_writing(self) -> None:
        self.pipe.other(self).resume()

    def pause(self) -> None:
        if not self.paused and self.transport is not None and not self.transport.is_closing():
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.transport is not None and not self.transport.is_closing():
            self.paused = False
            self.transport.resume_reading()


class Pipe:
    """A client's connection joined to a connection to a sibling worker."""

    def __init__(self, label: str, live: set[Pipe] | None = None) -> None:
        self.label = label
        self.client = _End(self, "client")
        self.sibling = _End(self, "sibling")
        self.closed = False
        self.started = False
        self.ended = asyncio.Event()  # both sides are gone (or were dropped)
        self._live = live if live is not None else set()  # the pipes not ended yet, ours among them
        self._live.add(self)
        self._grace: asyncio.TimerHandle | None = None

    def other(self, end: _End) -> _End:
        return self.sibling if end is self.client else self.client

    def take(self, client: asyncio.Transport) -> None:
        """Become the protocol of ``client``, whose reading is paused until :meth:`start`."""
        client.pause_reading()
        client.set_protocol(self.client)
        self.client.connection_made(client)
        self.client.paused = True

    def start(self, preamble: bytes, data: bytes) -> None:
        """Both sides are there: send the preamble and the client's bytes already read, carry on."""
        if self.closed or self.client.lost or self.sibling.lost:
            self.close("the client left before its connection was forwarded")
            return
        assert self.sibling.transport is not None
        self.started = True
        self.client.received += len(data)
        self.sibling.transport.write(preamble + data)
        self.client.resume()

    def carry(self, source: _End, data: bytes) -> None:
        target = self.other(source).transport
        if not self.closed and target is not None and not target.is_closing():
            target.write(data)

    def close(self, why: str) -> None:
        """Close both sides (each flushes what it holds first); log once."""
        first, self.closed = not self.closed, True
        for end in (self.client, self.sibling):
            if end.transport is not None and not end.transport.is_closing():
                end.transport.close()
        if first and self.started:
            log.info(
                "%s: forwarding ended (%s): %d bytes from the client, %d to it",
                self.label,
                why,
                self.client.received,
                self.sibling.received,
            )
        if self.client.lost and self.sibling.lost:
            self._end()
            if self._grace is not None:
                self._grace.cancel()
                self._grace = None
        elif first:
            self._grace = asyncio.get_running_loop().call_later(CLOSE_GRACE, self._abort)

    def _end(self) -> None:
        self.ended.set()
        self._live.discard(self)

    def _abort(self) -> None:
        """A side still flushing after the grace period (its peer does not read): drop it."""
        self._grace = None
        self._end()
        for end in (self.client, self.sibling):
            if end.transport is not None and not end.lost:
                log.info(
                    "%s: the %s did not take the rest in %g s; dropped", self.label, end.name, CLOSE_GRACE
                )
                end.transport.abort()


async def forward(
    path: Path, preamble: Preamble, client: asyncio.Transport, first: bytes, label: str, live: set[Pipe]
) -> Pipe:
    """Forward ``client`` (paused, its first bytes ``first`` already read) to the sibling listening
    on ``path``; the pipe is in ``live`` until it ends. If the sibling cannot be reached, the
    client's connection is closed."""
    pipe = Pipe(label, live)
    pipe.take(client)
    loop = asyncio.get_running_loop()
    try:
        await loop.create_unix_connection(lambda: pipe.sibling, str(path))
    except OSError as exc:
        log.warning("%s: cannot forward the connection to %s: %s; closing it", label, path.name, exc)
        pipe.sibling.lost = True  # it never was
        pipe.close("the sibling cannot be reached")
        return pipe
    pipe.start(preamble.encode(), first)
    return pipe
