"""Forwarding a TLS client to a sibling worker (streamd/workers/pipe.py, forwarded.py) without
processes: the pipe's bounds and its closing together, over fake transports that keep a write
buffer and pause and resume their protocol as asyncio's do; the receiving side's preamble."""

from __future__ import annotations

import asyncio
import itertools
import logging
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamd.rtsp.message import Request
from streamd.workers import pipe as pipe_module
from streamd.workers.forwarded import Arrival
from streamd.workers.pipe import HIGH_WATER, LOW_WATER, Pipe, forward
from streamd.workers.preamble import Preamble
from streamd.workers.presented import FORWARDED_TLS

CHUNK = 64 * 1024


class FakeTransport(asyncio.Transport):
    """A transport whose peer takes bytes only when the test says (:meth:`drain`)."""

    def __init__(self, extras: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.protocol: asyncio.Protocol | None = None
        self.buffer = bytearray()
        self.sent = bytearray()
        self.reading = True
        self.closing = False
        self.aborted = False
        self.high, self.low = 64 * 1024, 16 * 1024
        self.writing_paused = False
        self.extras = extras or {}
        self.max_buffered = 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extras.get(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol  # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.protocol is not None
        return self.protocol

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.high, self.low = high or self.high, low or self.low

    def get_write_buffer_size(self) -> int:
        return len(self.buffer)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closing, "written after close"
        self.buffer += data
        self.max_buffered = max(self.max_buffered, len(self.buffer))
        if len(self.buffer) > self.high and not self.writing_paused:
            self.writing_paused = True
            assert self.protocol is not None
            self.protocol.pause_writing()

    def drain(self, size: int | None = None) -> bytes:
        size = len(self.buffer) if size is None else size
        taken = bytes(self.buffer[:size])
        del self.buffer[:size]
        self.sent += taken
        if self.writing_paused and len(self.buffer) <= self.low:
            self.writing_paused = False
            assert self.protocol is not None
            self.protocol.resume_writing()
        return taken

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = self.aborted = True
        self.lose()

    def lose(self) -> None:
        assert self.protocol is not None
        self.protocol.connection_lost(None)


def joined() -> tuple[Pipe, FakeTransport, FakeTransport]:
    """A started pipe: a client transport (paused, as the server hands it over) and a sibling."""
    pipe = Pipe("client 192.0.2.7:4000 (to worker 1)")
    client, sibling = FakeTransport(), FakeTransport()
    client.pause_reading()
    pipe.take(client)
    sibling.set_protocol(pipe.sibling)
    pipe.sibling.connection_made(sibling)
    pipe.start(b"PREAMBLE\r\n", b"FIRST")
    return pipe, client, sibling


async def test_the_first_bytes_go_first_and_the_client_is_read_only_then() -> None:
    pipe, client, sibling = joined()
    assert client.reading and client.protocol is pipe.client
    pipe.client.data_received(b"MORE")
    pipe.sibling.data_received(b"ANSWER")
    assert sibling.drain() == b"PREAMBLE\r\nFIRSTMORE"
    assert client.drain() == b"ANSWER"


@pytest.mark.parametrize("direction", ["to the sibling", "to the client"])
async def test_a_full_side_stops_reading_the_other_until_it_drains(direction: str) -> None:
    pipe, client, sibling = joined()
    source, target, end = (
        (client, sibling, pipe.client) if direction == "to the sibling" else (sibling, client, pipe.sibling)
    )
    before = len(target.drain())
    assert target.high == HIGH_WATER and target.low == LOW_WATER
    sent = 0
    while source.reading:  # a reader that never waits: only the pipe's pausing stops it
        end.data_received(b"x" * CHUNK)
        sent += CHUNK
        assert sent < 10 * HIGH_WATER, "never paused"
    assert HIGH_WATER < target.max_buffered <= HIGH_WATER + CHUNK
    target.drain(target.get_write_buffer_size() - LOW_WATER - 1)
    assert not source.reading  # not yet below the low-water mark
    target.drain(1)
    assert source.reading
    assert len(target.sent) - before + len(target.buffer) == sent  # nothing lost on the way


async def test_when_one_side_ends_both_close_and_it_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    pipe, client, sibling = joined()
    pipe.client.data_received(b"abc")
    pipe.sibling.data_received(b"defgh")
    with caplog.at_level(logging.INFO, logger="streamd"):
        sibling.lose()  # the sibling closed (it answered and ended, or it died)
        assert client.closing and not client.aborted  # closed, so what it holds is still sent
        client.lose()
    lines = [r.getMessage() for r in caplog.records if "forwarding ended" in r.getMessage()]
    assert lines == [
        "client 192.0.2.7:4000 (to worker 1): forwarding ended (the sibling ended): "
        "8 bytes from the client, 5 to it"
    ]
    assert pipe._grace is None and pipe.ended.is_set()


async def test_eof_from_the_client_closes_the_sibling() -> None:
    pipe, client, sibling = joined()
    assert pipe.client.eof_received() is False
    assert sibling.closing and client.closing


async def test_a_side_that_does_not_flush_is_aborted_after_the_grace_period(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pipe_module, "CLOSE_GRACE", 0.01)
    pipe, client, sibling = joined()
    pipe.sibling.data_received(b"x")
    sibling.lose()
    assert client.closing and not client.aborted
    for _ in range(100):
        if client.aborted:
            break
        await asyncio.sleep(0.01)
    assert client.aborted


async def test_a_client_gone_before_the_sibling_answered_is_not_forwarded() -> None:
    pipe = Pipe("client")
    client, sibling = FakeTransport(), FakeTransport()
    pipe.take(client)
    client.lose()
    sibling.set_protocol(pipe.sibling)
    pipe.sibling.connection_made(sibling)
    pipe.start(b"PREAMBLE\r\n", b"")
    assert sibling.closing and not sibling.buffer


async def test_an_unreachable_sibling_closes_the_client(tmp_path: Path) -> None:
    client = FakeTransport()
    preamble = Preamble("rtsp", ("192.0.2.7", 4000), ("192.0.2.1", 322), True)
    live: set[Pipe] = set()
    pipe = await forward(tmp_path / "nobody.sock", preamble, client, b"PLAY", "client", live)
    assert client.closing and live == {pipe}
    client.lose()
    assert pipe.ended.is_set() and not live  # nothing left behind


class Served:
    def __init__(self) -> None:
        self.rtsp: list[tuple[asyncio.Transport, bytes]] = []
        self.tunnel: list[tuple[asyncio.Transport, Request, bytes]] = []

    def arrival(self) -> tuple[Arrival, FakeTransport]:
        arrival = Arrival(
            lambda t, d: self.rtsp.append((t, d)), lambda t, r, d: self.tunnel.append((t, r, d))
        )
        transport = FakeTransport({"peername": "", "socket": object()})
        transport.set_protocol(arrival)
        arrival.connection_made(transport)
        return arrival, transport


async def test_a_forwarded_rtsp_connection_is_presented_as_its_client_over_tls() -> None:
    served = Served()
    arrival, _ = served.arrival()
    line = Preamble("rtsp", ("192.0.2.7", 4000), ("192.0.2.1", 322), True).encode()
    for byte in line + b"OPTIONS":  # however the bytes are cut
        arrival.data_received(bytes([byte]))
        if served.rtsp:
            break
    ((transport, data),) = served.rtsp
    assert data == b""  # the byte after the preamble's end comes with the next read
    assert transport.get_extra_info("peername") == ("192.0.2.7", 4000)
    assert transport.get_extra_info("sockname") == ("192.0.2.1", 322)
    assert transport.get_extra_info("ssl_object") is FORWARDED_TLS
    assert transport.get_extra_info("socket") is None  # never handed over again as a socket


async def test_a_forwarded_tunnel_post_waits_for_its_request_head() -> None:
    served = Served()
    arrival, _ = served.arrival()
    line = Preamble("tunnel", ("::1", 4000), ("::1", 443), False).encode()
    arrival.data_received(line + b"POST /x HTTP/1.0\r\nx-sessioncookie: abc\r\n")
    assert not served.tunnel
    arrival.data_received(b"Content-Length: 32767\r\n\r\nT1BUSU9OUw==")
    ((transport, request, rest),) = served.tunnel
    assert (request.method, request.headers["x-sessioncookie"], rest) == ("POST", "abc", b"T1BUSU9OUw==")
    assert transport.get_extra_info("ssl_object") is None  # the preamble said clear


@pytest.mark.parametrize(
    "data",
    [
        b"OPTIONS rtsp://x/ RTSP/1.0\r\n\r\n",  # a sibling's (or anyone's) connection without a preamble
        b"STREAMD-PIPE/1 rtsp streamd-worker 0 127.0.0.1 1 tls\r\n",  # the siblings' trusted name
        b"STREAMD-PIPE/1 tunnel 127.0.0.1 5 127.0.0.1 1 tls\r\nRTSP/1.0 200 OK\r\n\r\n",
    ],
)
async def test_what_is_not_a_forwarded_client_is_dropped(
    data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    served = Served()
    arrival, transport = served.arrival()
    with caplog.at_level(logging.WARNING, logger="streamd"):
        arrival.data_received(data)
    assert transport.aborted and not served.rtsp and not served.tunnel
    assert "forwarded connection refused" in caplog.text


async def test_a_connection_that_never_sends_its_preamble_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("streamd.workers.forwarded.ARRIVAL_TIMEOUT", 0.01)
    served = Served()
    arrival, transport = served.arrival()
    arrival.data_received(b"STREAMD-PIPE/1 rtsp")
    for _ in range(100):
        if transport.aborted:
            break
        await asyncio.sleep(0.01)
    assert transport.aborted


class Collector(asyncio.Protocol):
    def __init__(self, first: bytes) -> None:
        self.data = bytearray(first)

    def data_received(self, data: bytes) -> None:
        self.data += data


@given(
    st.sampled_from(["rtsp", "tunnel"]),
    st.binary(max_size=200),
    st.lists(st.integers(0, 400), max_size=6),
)
async def test_however_a_forwarded_connection_is_cut_its_client_bytes_arrive_whole(
    kind: str, body: bytes, cuts: list[int]
) -> None:
    """The preamble, the POST head (a tunnel's) and the client's bytes after them, split into reads
    anywhere: the serving side gets the connection once, and every client byte in order."""
    head = b"POST /t HTTP/1.0\r\nx-sessioncookie: c\r\n\r\n" if kind == "tunnel" else b""
    line = Preamble(kind, ("192.0.2.7", 4000), ("192.0.2.1", 322), True).encode()
    stream = line + head + body
    served: list[tuple[asyncio.Transport, Collector]] = []

    def rtsp(transport: asyncio.Transport, data: bytes) -> None:
        served.append((transport, Collector(data)))
        transport.set_protocol(served[-1][1])

    def tunnel(transport: asyncio.Transport, request: Request, rest: bytes) -> None:
        assert request.headers["x-sessioncookie"] == "c"
        rtsp(transport, rest)

    arrival = Arrival(rtsp, tunnel)
    transport = FakeTransport()
    transport.set_protocol(arrival)
    arrival.connection_made(transport)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    for start, end in itertools.pairwise(points):
        assert transport.protocol is not None
        transport.protocol.data_received(stream[start:end])
    arrival._served()  # the test's loop never runs the deadline
    ((presented, collector),) = served
    assert bytes(collector.data) == body and not transport.aborted
    assert presented.get_extra_info("peername") == ("192.0.2.7", 4000)
