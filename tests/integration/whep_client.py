"""aiortc as a WHEP viewer that keeps the RTP it receives, and what the tests make of those
packets (sequence order, H.264 access units as aiortc depacketizes them)."""

from __future__ import annotations

import asyncio
import re

import aiohttp
from aiortc import RTCPeerConnection, RTCRtpCodecParameters, RTCSessionDescription
from aiortc.codecs import depayload
from aiortc.rtcrtpreceiver import RTCRtpReceiver

Packet = tuple[int, int, bool, bytes]  # sequence number, timestamp, marker, payload


class WhepClient:
    """aiortc as a WHEP viewer that keeps every RTP packet it receives, before its jitter buffer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.pc = RTCPeerConnection()
        self.packets: dict[str, list[Packet]] = {"video": [], "audio": []}
        self.receivers: dict[str, RTCRtpReceiver] = {}
        self.location: str | None = None
        self.status = 0
        self.answer = ""

    async def start(self, kinds: tuple[str, ...] = ("video", "audio")) -> None:
        for kind in kinds:
            transceiver = self.pc.addTransceiver(kind, direction="recvonly")
            self.receivers[kind] = transceiver.receiver
            self._record(transceiver.receiver, kind)
        self.prepare()
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with aiohttp.ClientSession() as http:
            headers = {"Content-Type": "application/sdp"}
            async with http.post(self.url, data=self.pc.localDescription.sdp, headers=headers) as response:
                self.status, self.answer = response.status, await response.text()
                self.location = response.headers.get("Location")
        if self.status == 201:
            await self.pc.setRemoteDescription(RTCSessionDescription(self.answer, "answer"))

    def prepare(self) -> None:
        """Called once the receivers exist, before the offer: a subclass's hook into them."""

    def _record(self, receiver: RTCRtpReceiver, kind: str) -> None:
        original = receiver._handle_rtp_packet
        packets = self.packets[kind]

        async def handle(packet, arrival_time_ms):  # type: ignore[no-untyped-def]
            packets.append((packet.sequence_number, packet.timestamp, bool(packet.marker), packet.payload))
            await original(packet, arrival_time_ms)

        receiver._handle_rtp_packet = handle  # type: ignore[method-assign]

    def ssrc(self, kind: str) -> int:
        """The SSRC the answer names for the server's ``kind`` stream."""
        section = next(m for m in self.answer.split("\r\nm=")[1:] if m.startswith(kind))
        return int(re.search(r"a=ssrc:(\d+) ", section).group(1))  # type: ignore[union-attr]

    async def send_plis(self, count: int = 1) -> None:
        """``count`` PLIs at once about the server's video (RFC 4585), once connected."""
        ours, receiver = self.ssrc("video"), self.receivers["video"]
        await asyncio.gather(*(receiver._send_rtcp_pli(ours) for _ in range(count)))

    async def delete(self) -> int:
        assert self.location is not None
        base = self.url.split("/whep/")[0]
        async with aiohttp.ClientSession() as http, http.delete(base + self.location) as response:
            return response.status

    async def close(self) -> None:
        await self.pc.close()


def ordered(packets: list[Packet]) -> list[Packet]:
    """Packets in sequence order (numbers start anywhere and wrap), each once."""
    first = packets[0][0]
    unique = {(p[0] - first) % 65536: p for p in packets}
    return [unique[k] for k in sorted(unique)]


def h264_access_units(packets: list[Packet]) -> list[tuple[int, list[bytes]]]:
    """(timestamp, NAL units without start codes) of each access unit, as aiortc depacketizes
    ``packets`` in the order given (RFC 6184)."""
    codec = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=96)
    units: list[tuple[int, list[bytes]]] = []
    current = b""
    for _seq, timestamp, marker, payload in packets:
        current += depayload(codec, payload)
        if marker:
            units.append((timestamp, [n for n in current.split(b"\x00\x00\x00\x01") if n]))
            current = b""
    return units


def h264_units(packets: list[Packet]) -> list[list[bytes]]:
    """The NAL units of each access unit of ``packets``, taken in sequence order."""
    return [unit for _, unit in h264_access_units(ordered(packets))]
