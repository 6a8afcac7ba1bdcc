"""A raw RTSP-over-HTTP tunnel client that behaves like the live555 family (openRTSP, VLC).

It opens the GET half, then the POST half with the same ``x-sessioncookie``, sends its RTSP
requests base64-encoded on the POST, and reads responses and interleaved RTP/RTCP from the GET.
Like live555 it sends its RTCP receiver reports as raw ``$`` frames on the GET connection, and no
other keep-alive: a server that reads only the POST half times such a session out while it plays.
"""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass, field

from aiortc.rtp import RtcpSrPacket, RtpPacket

from sdp.parser import parse as parse_sdp
from streamd.rtp.receiver_stats import ReceiverStats
from streamd.rtp.rtcp import parse_compound, receiver_report
from streamd.rtsp.message import InterleavedFrame, Request, Response
from streamd.rtsp.parser import MessageParser

TUNNEL_TYPE = "application/x-rtsp-tunnelled"


@dataclass
class TrackReception:
    """What arrived on one interleaved RTP channel."""

    stats: ReceiverStats
    ssrc: int = 0
    arrivals: list[tuple[float, RtpPacket]] = field(default_factory=list)


class TunnelClient:
    def __init__(self, host: str, port: int, path: str, cookie: str = "h4tunnel0001") -> None:
        self.host, self.port, self.path, self.cookie = host, port, path, cookie
        self.url = f"rtsp://{host}:{port}/{path}"
        self.cseq = 0
        self.session: str | None = None
        self.tracks: dict[int, TrackReception] = {}  # by RTP channel
        self.reports_sent = 0
        self._parser = MessageParser()
        self._responses: asyncio.Queue[Response] = asyncio.Queue()
        self._get: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._post: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.get_closed = asyncio.Event()

    async def open(self) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        writer.write(
            (
                f"GET /{self.path} HTTP/1.0\r\nx-sessioncookie: {self.cookie}\r\n"
                f"Accept: {TUNNEL_TYPE}\r\nPragma: no-cache\r\nCache-Control: no-cache\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        if not head.startswith(b"HTTP/1.0 200") and not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"tunnel GET refused: {head!r}")
        self._get = (reader, writer)
        self._tasks.append(asyncio.create_task(self._read_get()))
        _, self._post = await asyncio.open_connection(self.host, self.port)
        self._post.write(
            (
                f"POST /{self.path} HTTP/1.0\r\nx-sessioncookie: {self.cookie}\r\n"
                f"Content-Type: {TUNNEL_TYPE}\r\nPragma: no-cache\r\nCache-Control: no-cache\r\n"
                "Content-Length: 32767\r\nExpires: Sun, 9 Jan 1972 00:00:00 GMT\r\n\r\n"
            ).encode()
        )

    async def _read_get(self) -> None:
        assert self._get is not None
        reader = self._get[0]
        try:
            while data := await reader.read(65536):
                now = time.monotonic()
                for event in self._parser.feed(data):
                    if isinstance(event, Response):
                        self._responses.put_nowait(event)
                    elif isinstance(event, InterleavedFrame):
                        self._frame(event, now)
        finally:
            self.get_closed.set()

    def _frame(self, frame: InterleavedFrame, now: float) -> None:
        if frame.channel % 2 == 0:
            track = self.tracks.get(frame.channel)
            if track is None:
                return
            packet = RtpPacket.parse(frame.payload)
            track.ssrc = packet.ssrc
            track.stats.receive(packet.sequence_number, packet.timestamp, now)
            track.arrivals.append((now, packet))
        else:
            track = self.tracks.get(frame.channel - 1)
            for packet in parse_compound(frame.payload):
                if track is not None and isinstance(packet, RtcpSrPacket):
                    track.stats.sender_report(packet.sender_info.ntp_timestamp, now)

    async def request(self, method: str, uri: str, headers: dict[str, str] | None = None) -> Response:
        assert self._post is not None
        self.cseq += 1
        request = Request(method, uri)
        request.headers["CSeq"] = str(self.cseq)
        if self.session:
            request.headers["Session"] = self.session
        for name, value in (headers or {}).items():
            request.headers[name] = value
        self._post.write(base64.b64encode(bytes(request)))
        await self._post.drain()
        response = await asyncio.wait_for(self._responses.get(), 10)
        if "Session" in response.headers:
            self.session = response.headers["Session"].split(";")[0]
        return response

    async def play_all(self) -> None:
        """DESCRIBE, SETUP every track over interleaved channels 0-1, 2-3, ..., then PLAY."""
        response = await self.request("DESCRIBE", self.url, {"Accept": "application/sdp"})
        if response.status != 200:
            raise RuntimeError(f"DESCRIBE: {response.status}")
        base = response.headers.get("Content-Base", self.url + "/")
        for i, media in enumerate(parse_sdp(response.body).media):
            control = media.get("control") or ""
            uri = control if "://" in control else base + control
            rtpmap = (media.get("rtpmap") or "0 x/90000").split()[1].split("/")
            transport = f"RTP/AVP/TCP;unicast;interleaved={2 * i}-{2 * i + 1}"
            response = await self.request("SETUP", uri, {"Transport": transport})
            if response.status != 200:
                raise RuntimeError(f"SETUP {uri}: {response.status}")
            self.tracks[2 * i] = TrackReception(ReceiverStats(int(rtpmap[1])))
        response = await self.request("PLAY", self.url, {"Range": "npt=0.000-"})
        if response.status != 200:
            raise RuntimeError(f"PLAY: {response.status}")

    def send_receiver_reports(self, *, as_duplicates: bool = False) -> None:
        """One RR + SDES per track, as raw ``$`` frames on the GET connection (live555 does this).

        ``as_duplicates``: report a cumulative loss of -1 with fraction 255, as live555 clients do
        after a duplicate packet."""
        assert self._get is not None
        now = time.monotonic()
        for channel, track in self.tracks.items():
            if not track.ssrc:
                continue
            block = track.stats.report_block(track.ssrc, now)
            if as_duplicates:
                block.packets_lost, block.fraction_lost = -1, 255
            rtcp = receiver_report(0x5EED0000 + channel, [block], "tunnel-client")
            self._get[1].write(b"$" + bytes([channel + 1]) + len(rtcp).to_bytes(2, "big") + rtcp)
            self.reports_sent += 1

    async def keep_alive_by_rtcp(self, seconds: float, interval: float = 1.0) -> None:
        """Report every ``interval`` for ``seconds``: the only thing that keeps the session alive."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.get_closed.is_set():
            await asyncio.sleep(interval)
            self.send_receiver_reports()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for writer in (self._post, self._get[1] if self._get else None):
            if writer is not None:
                writer.close()
