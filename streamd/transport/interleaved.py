"""RTP and RTCP carried inside the RTSP/TCP connection (RFC 2326 10.12, ``$`` framing)."""

from __future__ import annotations

import struct
from typing import Protocol

from streamd.rtsp.message import InterleavedFrame

CONGESTED_BYTES = 1024 * 1024
_FRAME_HEADER = struct.Struct("!BBH")  # '$', channel, length
_DOLLAR = 0x24


class FrameWriter(Protocol):
    """The RTSP connection, as far as interleaved data needs it."""

    def write_bytes(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    @property
    def is_closing(self) -> bool: ...

    @property
    def buffered(self) -> int: ...

    @property
    def writable(self) -> bool: ...


class InterleavedSink:
    """One track's two channels on a client's RTSP connection."""

    def __init__(self, connection: FrameWriter, rtp_channel: int, rtcp_channel: int) -> None:
        self._connection = connection
        self.rtp_channel = rtp_channel
        self.rtcp_channel = rtcp_channel
        self.description = f"TCP interleaved {rtp_channel}-{rtcp_channel}"

    def send_rtp(self, packet: bytes) -> None:
        if not self._connection.is_closing:
            self._connection.write_bytes(_frame(self.rtp_channel, packet))

    def send_rtp_many(self, packets: list[bytes]) -> None:
        """An access unit's packets as one write (one transport call instead of one per packet)."""
        if not self._connection.is_closing:
            channel, pack = self.rtp_channel, _FRAME_HEADER.pack
            self._connection.write_bytes(b"".join([pack(_DOLLAR, channel, len(p)) + p for p in packets]))

    def send_rtcp(self, packet: bytes) -> None:
        if not self._connection.is_closing:
            self._connection.write_bytes(bytes(InterleavedFrame(self.rtcp_channel, packet)))

    async def drain(self) -> None:
        await self._connection.drain()

    @property
    def writable(self) -> bool:
        """False while the connection's transport has paused writing (above its high-water mark):
        an on-demand sender waits in ``drain`` then, as the pacing loop always did."""
        return self._connection.writable

    @property
    def closed(self) -> bool:
        return self._connection.is_closing

    @property
    def congested(self) -> bool:
        """The client is not keeping up: live fan-out drops rather than queue without end."""
        return self._connection.buffered > CONGESTED_BYTES


def _frame(channel: int, packet: bytes) -> bytes:
    return _FRAME_HEADER.pack(_DOLLAR, channel, len(packet)) + packet
