"""A lean RTSP receiver for the benchmarks: SETUP every track over UDP or TCP, PLAY, record packets.

Just enough RTSP (the project's own message classes and parser) that a benchmark never depends on
a player's start-up or buffering. Each track records every RTP packet cheaply (arrival, sequence
number, timestamp in typed arrays) so thousands of streams fit in one process; with ``live=True``
it also keeps ``ReceiverStats`` up to date and can send RTCP receiver reports built from them.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
import struct
import time
from array import array
from dataclasses import dataclass, field

from aiortc.rtp import RtcpRrPacket, RtcpSdesPacket, RtcpSourceInfo, RtcpSrPacket

from benchmarks.impair.relay import FlowCounters
from sdp.parser import parse as parse_sdp
from streamd.rtp.receiver_stats import ReceiverStats
from streamd.rtp.rtcp import parse_compound
from streamd.rtsp.message import InterleavedFrame, Request, Response
from streamd.rtsp.parser import MessageParser

Address = tuple[str, int]
_SSRC = re.compile(r";\s*ssrc=\s*([0-9A-Fa-f]{1,8})\b")


class Track:
    """One received RTP stream."""

    def __init__(self, control_url: str, clock: int, live: bool, playout_delay: float) -> None:
        self.control_url, self.clock = control_url, clock
        self.arrivals, self.seqs, self.stamps = array("d"), array("H"), array("I")
        self.ssrc: int | None = None
        # the SSRC the server announced in SETUP: packets of any other stream arriving on our
        # port (a stale session of an earlier run still sending to a port the OS reused) are
        # counted in ``foreign`` and kept out of the figures
        self.expected_ssrc: int | None = None
        self.foreign = 0
        self.stats = ReceiverStats(clock, playout_delay) if live else None
        self.jitter_history: list[tuple[float, float]] = []  # (arrival, jitter ms)
        self.rtcp_peer: Address | None = None
        self.relay_flow: FlowCounters | None = None  # ground truth when received through a relay

    def rtp(self, data: bytes, now: float) -> None:
        if len(data) < 12 or data[0] >> 6 != 2:
            return
        seq, ts, ssrc = struct.unpack_from("!HII", data, 2)
        if self.expected_ssrc is not None and ssrc != self.expected_ssrc:
            self.foreign += 1
            return
        self.arrivals.append(now)
        self.seqs.append(seq)
        self.stamps.append(ts)
        if self.ssrc is None:
            self.ssrc = ssrc
        if self.stats is not None:
            self.stats.receive(seq, ts, now)

    def rtcp(self, data: bytes, now: float) -> None:
        if self.stats is None:
            return
        for packet in parse_compound(data):
            if isinstance(packet, RtcpSrPacket) and packet.ssrc == self.ssrc:
                self.stats.sender_report(packet.sender_info.ntp_timestamp, now)

    def receiver_report(self, reporter_ssrc: int, now: float) -> tuple[bytes, dict[str, float | int]]:
        """An RR + SDES compound about this track, and the figures it carries (for comparison)."""
        assert self.stats is not None and self.ssrc is not None
        block = self.stats.report_block(self.ssrc, now)
        sdes = RtcpSdesPacket(chunks=[RtcpSourceInfo(ssrc=reporter_ssrc, items=[(1, b"bench@127.0.0.1")])])
        sent = {
            "fraction_lost": block.fraction_lost / 256,
            "cumulative_lost": block.packets_lost,
            "jitter_ms": 1000 * block.jitter / self.clock,
            "highest_sequence": block.highest_sequence,
        }
        return bytes(RtcpRrPacket(ssrc=reporter_ssrc, reports=[block])) + bytes(sdes), sent

    def sample_jitter(self, now: float) -> None:
        if self.stats is not None:
            self.jitter_history.append((now, 1000 * self.stats.jitter_seconds))


_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python does not always export it
_TIMESTAMP_SPACE = socket.CMSG_SPACE(16)
_REALTIME_TO_MONOTONIC = time.time() - time.monotonic()  # kernel stamps are CLOCK_REALTIME


class StampedSocket:
    """A receiving UDP socket whose packets carry the kernel's arrival time (``SO_TIMESTAMPNS``).

    Arrival times taken in Python when the loop gets round to a packet include the receiver's
    own scheduling delay: with hundreds of streams in one process that is the generator's lag,
    not the server's. The kernel stamps each datagram when it reaches the socket, so lateness
    measures when the server sent (plus the loopback hop). Falls back to ``time.monotonic()``
    where the kernel gives no stamp. Times are on the ``time.monotonic`` scale.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, track: Track, rtcp: bool, host: str) -> None:
        self.track, self.is_rtcp, self._loop = track, rtcp, loop
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        sock, track = self.sock, self.track
        for _ in range(256):  # bounded, so one busy socket cannot starve the others
            try:
                data, ancillary, _, addr = sock.recvmsg(65536, _TIMESTAMP_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            now = None
            for level, kind, raw in ancillary:
                if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(raw) >= 16:
                    sec, nsec = struct.unpack_from("qq", raw)
                    now = sec + nsec * 1e-9 - _REALTIME_TO_MONOTONIC
            if now is None:
                now = time.monotonic()
            if self.is_rtcp:
                track.rtcp_peer = (addr[0], addr[1])
                track.rtcp(data, now)
            else:
                track.rtp(data, now)

    def sendto(self, data: bytes, addr: Address) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendto(data, addr)

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self._loop.remove_reader(self.sock.fileno())
            self.sock.close()


class Control:
    """The RTSP connection: requests one at a time; interleaved frames go to ``on_frame``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.parser, self.cseq = reader, writer, MessageParser(), 0
        self.session: str | None = None
        self.frames: list[InterleavedFrame] = []

    async def request(self, method: str, url: str, **headers: str) -> Response:
        self.cseq += 1
        request = Request(method, url)
        request.headers["CSeq"] = str(self.cseq)
        if self.session:
            request.headers["Session"] = self.session
        for k, v in headers.items():
            request.headers[k.replace("_", "-")] = v
        self.writer.write(bytes(request))
        while True:
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError(f"connection closed during {method}")
            for event in self.parser.feed(data):
                if isinstance(event, InterleavedFrame):
                    self.frames.append(event)
                elif isinstance(event, Response):
                    if "Session" in event.headers:
                        self.session = event.headers["Session"].split(";")[0].strip()
                    return event


def _resolve(base: str, control: str) -> str:
    if "://" in control:
        return control
    return base.rstrip("/") + "/" + control


@dataclass
class Session:
    """One client session: control connection, its tracks, and PLAY timing."""

    control: Control
    url: str
    tracks: list[Track]
    tcp: bool
    transports: list[StampedSocket] = field(default_factory=list)
    play_sent: float = 0.0
    reporter_ssrc: int = 0x0B0B0B0B
    _reader_task: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        path: str,
        *,
        tcp: bool = False,
        relay: object | None = None,
        live: bool = False,
        playout_delay: float = 0.1,
        url_port: int | None = None,
        local_host: str = "127.0.0.1",
        tls: ssl.SSLContext | None = None,
    ) -> Session:
        """DESCRIBE and SETUP every track. ``relay`` (a ``UdpRelay``) carries UDP through impairment.

        ``url_port``: the port named in URLs when connecting through a TCP relay on another port.
        ``local_host``: where the RTP/RTCP sockets listen (this side of a kernel link).
        ``tls``: RTSPS (the control connection, and interleaved media with ``tcp``, inside TLS).
        """
        loop = asyncio.get_running_loop()
        control = Control(*await asyncio.open_connection(host, port, ssl=tls))
        url = f"{'rtsps' if tls else 'rtsp'}://{host}:{url_port or port}/{path}"
        described = await control.request("DESCRIBE", url, Accept="application/sdp")
        if described.status != 200:
            raise RuntimeError(f"DESCRIBE {url}: {described.status}")
        base = described.headers.get("Content-Base") or url
        sdp = parse_sdp(described.body)
        session = cls(control, url, [], tcp)
        for index, media in enumerate(sdp.media):
            rtpmap = media.rtpmap(media.formats[0])
            clock = rtpmap.clock_rate if rtpmap else 90000
            track = Track(_resolve(base, media.control or ""), clock, live, playout_delay)
            if tcp:
                spec = f"RTP/AVP/TCP;unicast;interleaved={2 * index}-{2 * index + 1}"
            else:
                rtp_t = StampedSocket(loop, track, False, local_host)
                rtcp_t = StampedSocket(loop, track, True, local_host)
                session.transports += [rtp_t, rtcp_t]
                ports = (rtp_t.sock.getsockname()[1], rtcp_t.sock.getsockname()[1])
                if relay is not None:
                    a, b = await relay.add_pair(("127.0.0.1", ports[0]), ("127.0.0.1", ports[1]))  # type: ignore[attr-defined]
                    track.relay_flow = a.forward
                    ports = (
                        a.transport.get_extra_info("sockname")[1],
                        b.transport.get_extra_info("sockname")[1],
                    )
                spec = f"RTP/AVP;unicast;client_port={ports[0]}-{ports[1]}"
            response = await control.request("SETUP", track.control_url, Transport=spec)
            if response.status != 200:
                raise RuntimeError(f"SETUP {track.control_url}: {response.status}")
            if found := _SSRC.search(response.headers.get("Transport", "")):
                track.expected_ssrc = int(found.group(1), 16)
            session.tracks.append(track)
        return session

    async def play(self) -> None:
        self.play_sent = time.monotonic()
        response = await self.control.request("PLAY", self.url, Range="npt=0-")
        if response.status != 200:
            raise RuntimeError(f"PLAY {self.url}: {response.status}")
        if self.tcp:
            now = time.monotonic()
            for frame in self.control.frames:
                self._frame(frame.channel, frame.payload, now)
            self.control.frames.clear()
            rest = self.control.parser.detach()
            self._reader_task = asyncio.create_task(self._read_interleaved(rest))

    def _frame(self, channel: int, payload: bytes, now: float) -> None:
        index, is_rtcp = divmod(channel, 2)
        if index < len(self.tracks):
            track = self.tracks[index]
            (track.rtcp if is_rtcp else track.rtp)(payload, now)

    async def _read_interleaved(self, buffer: bytes) -> None:
        """After PLAY the connection carries only ``$`` frames until we speak again: split them fast."""
        buf = bytearray(buffer)
        now = time.monotonic
        reader = self.control.reader
        while True:
            t = now()
            pos = 0
            while len(buf) - pos >= 4:
                if buf[pos] != 0x24:  # not a frame: an RTSP message (none expected); skip a byte
                    pos += 1
                    continue
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                if len(buf) - pos - 4 < length:
                    break
                self._frame(buf[pos + 1], bytes(buf[pos + 4 : pos + 4 + length]), t)
                pos += 4 + length
            del buf[:pos]
            data = await reader.read(262144)
            if not data:
                return
            buf += data

    def send_receiver_reports(self, now: float) -> list[dict[str, float | int]]:
        """One RR per track to where its RTCP comes from; returns what each report said."""
        sent = []
        for index, track in enumerate(self.tracks):
            if track.stats is None or track.ssrc is None or not track.stats.received:
                sent.append({})
                continue
            data, figures = track.receiver_report(self.reporter_ssrc + index, now)
            if self.tcp:
                self.control.writer.write(bytes(InterleavedFrame(2 * index + 1, data)))
            elif track.rtcp_peer is not None:
                self.transports[2 * index + 1].sendto(data, track.rtcp_peer)
            else:
                sent.append({})
                continue
            sent.append(figures)
        return sent

    def first_packet_delay(self) -> float | None:
        """Seconds from sending PLAY to the first RTP packet of any track (monotonic clocks)."""
        firsts = [t.arrivals[0] for t in self.tracks if t.arrivals]
        return min(firsts) - self.play_sent if firsts else None

    async def close(self, teardown: bool = True) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
        if teardown and not self.tcp:
            with contextlib.suppress(TimeoutError, ConnectionError, OSError):
                await asyncio.wait_for(self.control.request("TEARDOWN", self.url), 5)
        self.control.writer.close()
        for transport in self.transports:
            transport.close()
