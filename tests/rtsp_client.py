"""A small raw RTSP client for tests: what players do not let us see (seq, rtptime, BYE, timing).

Players (ffmpeg, GStreamer, PyAV) are the real proof; this client checks protocol details.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from aiortc.rtp import RtcpByePacket, RtpPacket

from streamd.rtp.rtcp import parse_compound
from streamd.rtsp.message import InterleavedFrame, Request, Response
from streamd.rtsp.parser import MessageParser


@dataclass
class Received:
    """Packets as they arrived: (arrival time, channel, bytes)."""

    frames: list[tuple[float, int, bytes]] = field(default_factory=list)

    def rtp(self, channel: int) -> list[tuple[float, RtpPacket]]:
        return [(t, RtpPacket.parse(d)) for t, c, d in self.frames if c == channel]

    def rtcp(self, channel: int) -> list:
        out = []
        for t, c, d in self.frames:
            if c == channel:
                out.extend((t, p) for p in parse_compound(d))
        return out

    def got_bye(self, channel: int) -> bool:
        return any(isinstance(p, RtcpByePacket) for _, p in self.rtcp(channel))


class RawRtspClient:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.cseq = 0
        self.session: str | None = None
        self.received = Received()
        self._parser = MessageParser()
        self._responses: asyncio.Queue[Response] = asyncio.Queue()
        self._server_requests: asyncio.Queue[Request] = asyncio.Queue()  # REDIRECT, OPTIONS, ...
        self.server_requests: list[Request] = []
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    async def connect(self) -> RawRtspClient:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._task = asyncio.create_task(self._read_loop())
        return self

    async def _read_loop(self) -> None:
        assert self._reader is not None
        try:
            while data := await self._reader.read(65536):
                now = time.monotonic()
                for event in self._parser.feed(data):
                    if isinstance(event, InterleavedFrame):
                        self.received.frames.append((now, event.channel, event.payload))
                    elif isinstance(event, Response):
                        self._responses.put_nowait(event)
                    elif isinstance(event, Request):
                        self.server_requests.append(event)
                        self._server_requests.put_nowait(event)
        finally:
            self.closed.set()

    def url(self, path: str) -> str:
        return f"rtsp://{self.host}:{self.port}/{path}"

    async def send_raw(self, data: bytes) -> None:
        assert self._writer is not None
        self._writer.write(data)
        await self._writer.drain()

    async def next_response(self, timeout: float = 10) -> Response:
        return await asyncio.wait_for(self._responses.get(), timeout)

    async def next_server_request(self, timeout: float = 10) -> Request:
        """The next request the server sent us (it is also kept in ``server_requests``)."""
        return await asyncio.wait_for(self._server_requests.get(), timeout)

    async def request(
        self, method: str, uri: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> Response:
        self.cseq += 1
        request = Request(method, uri)
        request.headers["CSeq"] = str(self.cseq)
        if self.session and "Session" not in (headers or {}):
            request.headers["Session"] = self.session
        for k, v in (headers or {}).items():
            request.headers[k] = v
        request.body = body
        await self.send_raw(bytes(request))
        response = await self.next_response()
        if "Session" in response.headers:
            self.session = response.headers["Session"].split(";")[0]
        return response

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._task is not None:
            self._task.cancel()


def ticks_after(timestamp: int, rtptime: int) -> int:
    """Signed RTP ticks from ``rtptime`` to ``timestamp`` (32-bit wrap taken into account).

    RTP-Info's rtptime is the RTP time of the Range start (RFC 2326 12.33); the first packet sent
    after a PLAY is the first frame at or after it (B-frames) or a little before it (AAC priming).
    """
    return (timestamp - rtptime + 2**31) % 2**32 - 2**31
