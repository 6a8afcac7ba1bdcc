"""A packet sink that protects what goes through it: SRTP for RTP, SRTCP for sender reports.

Wrapping the sink keeps the one RTP sender (``OutgoingStream``) and every caller of a sink
(file playback, live readers) unchanged: each packet is protected once, for this session only,
after its header was packed."""

from __future__ import annotations

from streamd.srtp.context import Protector
from streamd.transport.sink import PacketSink


class SrtpSink:
    def __init__(self, inner: PacketSink, protector: Protector) -> None:
        self.inner = inner
        self.protector = protector
        self.description = f"{inner.description} SRTP {protector.key.suite.name}"

    def send_rtp(self, packet: bytes) -> None:
        self.inner.send_rtp(self.protector.rtp(packet))

    def send_rtp_many(self, packets: list[bytes]) -> None:
        protected = self.protector.rtp_many(packets)
        many = getattr(self.inner, "send_rtp_many", None)
        if many is None:
            for packet in protected:
                self.inner.send_rtp(packet)
        else:
            many(protected)

    def send_rtcp(self, packet: bytes) -> None:
        self.inner.send_rtcp(self.protector.rtcp(packet))

    async def drain(self) -> None:
        await self.inner.drain()

    writable = True  # as a UDP sink: never holds the sender back (see SrtpStreamSink)

    @property
    def closed(self) -> bool:
        return self.inner.closed

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()

    def __getattr__(self, name: str) -> object:  # rtp_addr, rtcp_addr, channels: the inner sink's
        return getattr(self.inner, name)


class SrtpStreamSink(SrtpSink):
    """Around an interleaved sink, whose ``writable`` property makes the sender wait in ``drain``."""

    @property  # type: ignore[override]
    def writable(self) -> bool:
        return getattr(self.inner, "writable", True)


def protect_sink(inner: PacketSink, protector: Protector) -> SrtpSink:
    """The protecting sink for ``inner``, keeping its flow-control shape (playback checks it)."""
    if isinstance(getattr(type(inner), "writable", None), property):
        return SrtpStreamSink(inner, protector)
    return SrtpSink(inner, protector)
