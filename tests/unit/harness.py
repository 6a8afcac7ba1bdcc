"""An in-process harness for the RTSP server's request handling: no sockets, no sleeping.

The real composed server (handlers, registry, sessions, routing, paths) runs on the test's event
loop with a clock the test moves, fake RTSP connections that record what is written to them, and a
fake UDP pair that records datagrams. Tests send requests, read responses and interleaved frames,
feed RTCP and publisher RTP, and reap by moving the clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Mapping
from pathlib import Path

from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket

from media.testsrc import write_synthetic_media
from streamd.auth.users import Permission, User
from streamd.catalog import Catalog
from streamd.config import ServerConfig
from streamd.rtsp.message import InterleavedFrame, Request, Response
from streamd.rtsp.parser import MessageParser
from streamd.server import RtspServer

ANNOUNCED = (
    "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=cam\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    "a=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z/QADZGWQFB+wEQAAAMABAAAAwDIPFCpIA==,aOvDxEhE\r\n"
    "a=control:streamid=0\r\n"
)

# anyone may read and publish anything (what the tests of other rules assume)
OPEN = (User("any", permissions=(Permission("read"), Permission("publish"))),)


def make_media(folder: Path) -> Path:
    """A one-second H.264 + AAC file, small enough to make in a fraction of a second."""
    folder.mkdir(parents=True, exist_ok=True)
    write_synthetic_media(folder / "clip.mp4", seconds=1, size=(64, 48), fps=10, video_bit_rate=50_000)
    return folder


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeConnection:
    """An RTSP connection as handlers see it: an address, its sessions, and the bytes written to it."""

    _ports = itertools.count(40000)

    def __init__(self, host: str = "10.0.0.1") -> None:
        self.peer = (host, next(self._ports))
        self.local = ("10.0.0.254", 554)
        self.label = f"client {host}:{self.peer[1]}"
        self.sessions: set[str] = set()
        self.secure = False  # RTSPS (issue 15)
        self.last_activity = 0.0
        self.written = bytearray()
        self.closed = False
        self._parser = MessageParser()
        self.responses: list[Response] = []
        self.frames: list[InterleavedFrame] = []

    # the FrameWriter side, for interleaved sinks
    def write_bytes(self, data: bytes) -> None:
        if not self.closed:
            self.written += data
            for event in self._parser.feed(data):
                if isinstance(event, InterleavedFrame):
                    self.frames.append(event)
                elif isinstance(event, Response):
                    self.responses.append(event)

    async def drain(self) -> None:
        return None

    @property
    def is_closing(self) -> bool:
        return self.closed

    @property
    def buffered(self) -> int:
        return 0

    @property
    def writable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True


class FakeSocket:
    def __init__(self, sent: list[tuple[bytes, tuple[str, int]]]) -> None:
        self.sent = sent

    def send_many(self, packets: list[bytes], addr: tuple[str, int]) -> None:
        self.sent.extend((p, addr) for p in packets)


class FakeUdp:
    """The server's RTP/RTCP socket pair, recording what would be sent."""

    rtp_port = 6970
    rtcp_port = 6971

    def __init__(self) -> None:
        self.rtp: list[tuple[bytes, tuple[str, int]]] = []
        self.rtcp: list[tuple[bytes, tuple[str, int]]] = []
        self._rtp = FakeSocket(self.rtp)
        self._closed = False

    def send_rtp(self, packet: bytes, addr: tuple[str, int]) -> None:
        self.rtp.append((packet, addr))

    def send_rtcp(self, packet: bytes, addr: tuple[str, int]) -> None:
        self.rtcp.append((packet, addr))

    def close(self) -> None:
        self._closed = True


class Harness:
    def __init__(self, media: Path | None, **settings: object) -> None:
        # the default policy publishes only from loopback; harness clients are on 10.0.0.x
        settings.setdefault("users", OPEN)
        config = dataclasses.replace(
            ServerConfig(test_stream=False, session_timeout=60, multicast_range=""), **settings
        )
        self.clock = FakeClock()
        self.server = RtspServer(config, Catalog(media, test_stream=None), clock=self.clock)
        self.udp = FakeUdp()
        self.server.udp = self.udp  # type: ignore[assignment]
        self.server.player.c.udp = self.udp  # type: ignore[assignment]
        self._cseq = itertools.count(1)

    def connect(self, host: str = "10.0.0.1") -> FakeConnection:
        connection = FakeConnection(host)
        self.server.connection_opened(connection)  # type: ignore[arg-type]
        return connection

    def disconnect(self, connection: FakeConnection) -> None:
        connection.close()
        self.server.connection_closed(connection)  # type: ignore[arg-type]

    async def request(
        self,
        connection: FakeConnection,
        method: str,
        path: str,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        *,
        session: str | None = None,
    ) -> Response:
        """One request through the real handling, written to ``connection`` as a real one would be."""
        uri = path if path == "*" else f"rtsp://10.0.0.254:554/{path}"
        all_headers = {"CSeq": str(next(self._cseq)), **(headers or {})}
        if session is not None:
            all_headers["Session"] = session
        response, after = await self.server.handle(
            connection, Request(method, uri, "RTSP/1.0", all_headers, body)
        )  # type: ignore[arg-type]
        connection.write_bytes(bytes(response))
        if after is not None:
            after()
        return response

    def interleaved(self, connection: FakeConnection, channel: int, payload: bytes) -> None:
        self.server.interleaved_received(connection, InterleavedFrame(channel, payload))  # type: ignore[arg-type]

    async def reap(self) -> None:
        """One sweep of the reaper at the clock's time (the server runs one every reap_interval)."""
        await self.server.lifecycle.reap(self.clock())

    async def close(self) -> None:
        for session in self.server.sessions.values():
            await self.server.lifecycle.end(session, "test over", send_bye=False)
        await self.server.lifecycle.wait()
        self.server.multicast.close()
        await self.server.paths.close()


def session_id(response: Response) -> str:
    return response.headers["Session"].split(";")[0]


def receiver_report(ssrc: int) -> bytes:
    """An RTCP RR about ``ssrc``, as a player sends them."""
    info = RtcpReceiverInfo(
        ssrc=ssrc, fraction_lost=0, packets_lost=0, highest_sequence=1, jitter=0, lsr=0, dlsr=0
    )
    return bytes(RtcpRrPacket(ssrc=0x1234, reports=[info]))


async def until(condition: object, *, turns: int = 2000) -> None:
    """Let the loop run until ``condition()`` holds (data-driven, no timing assumption)."""
    assert callable(condition)
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never held")
