"""MPEG transport stream bytes cut into timed groups of whole 188-byte packets.

For sending a TS over RTP (RFC 2250, payload type 33) each RTP packet carries whole TS
packets and is paced by the stream's own clock: the PCRs. Bytes between two PCRs get times
interpolated by byte position (the PCR model of ISO 13818-1 2.4.2.2: constant rate between
PCRs). Sans-I/O: bytes in, ``(ticks_90k, chunk)`` out; times start at 0 at the first PCR.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TS_PACKET = 188
SYNC = 0x47
PACKETS_PER_CHUNK = 7  # 1316 bytes: fits a 1400-byte payload, the RFC 2250 custom
PCR_WRAP = 1 << 33
MAX_PCR_GAP = 90000  # over 1 s between PCRs: a discontinuity, not a rate
MAX_PENDING = 4096  # TS packets held while waiting for the next PCR (~770 KB)


def pcr_of(packet: bytes) -> int | None:
    """The PCR base (90 kHz) in a TS packet's adaptation field, if it has one."""
    if len(packet) < 12 or packet[0] != SYNC or not packet[3] & 0x20:
        return None
    if packet[4] < 7 or not packet[5] & 0x10:
        return None
    b = packet[6:11]
    return (b[0] << 25) | (b[1] << 17) | (b[2] << 9) | (b[3] << 1) | (b[4] >> 7)


@dataclass
class TsTimer:
    """Feed TS bytes; get chunks of whole packets with times interpolated between PCRs."""

    chunk_packets: int = PACKETS_PER_CHUNK
    _buffer: bytearray = field(default_factory=bytearray)
    _pending: list[bytes] = field(default_factory=list)  # packets since the last PCR
    _last_pcr: int | None = None  # unwrapped, 90 kHz
    _last_raw: int | None = None
    _first_pcr: int | None = None
    _rate: float | None = None  # ticks per packet, from the last PCR interval
    _out: list[bytes] = field(default_factory=list)  # packets waiting to fill a chunk
    _out_time: int | None = None

    @property
    def first_pcr(self) -> int | None:
        """The first PCR seen (90 kHz): the time origin of every chunk this timer returns."""
        return self._first_pcr

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buffer += data
        chunks: list[tuple[int, bytes]] = []
        while len(self._buffer) >= TS_PACKET:
            if self._buffer[0] != SYNC:
                sync = self._buffer.find(SYNC, 1)
                del self._buffer[: sync if sync > 0 else len(self._buffer)]
                continue
            packet = bytes(self._buffer[:TS_PACKET])
            del self._buffer[:TS_PACKET]
            chunks += self._packet(packet)
        return chunks

    def flush(self) -> list[tuple[int, bytes]]:
        """End of stream: time what is left at the last known rate."""
        chunks = self._release(None)
        if self._out:
            chunks.append((self._out_time or 0, b"".join(self._out)))
            self._out = []
        return chunks

    def _packet(self, packet: bytes) -> list[tuple[int, bytes]]:
        raw = pcr_of(packet)
        chunks: list[tuple[int, bytes]] = []
        if raw is not None:
            chunks = self._release(self._unwrap(raw))
        self._pending.append(packet)
        if len(self._pending) > MAX_PENDING:  # no PCR for too long: time at the last rate
            chunks += self._release(None)
        return chunks

    def _unwrap(self, raw: int) -> int:
        if self._last_pcr is None or self._last_raw is None:
            value = raw
        else:
            step = (raw - self._last_raw) % PCR_WRAP
            value = self._last_pcr + step if step <= MAX_PCR_GAP else self._last_pcr  # discontinuity
        self._last_raw = raw
        return value

    def _release(self, pcr: int | None) -> list[tuple[int, bytes]]:
        """Time the pending packets, now that the PCR after them (or the end) is known."""
        pending, self._pending = self._pending, []
        if pcr is not None and self._first_pcr is None:
            self._first_pcr = pcr
        start = self._last_pcr
        if pcr is not None and start is not None and pending and pcr > start:
            self._rate = (pcr - start) / len(pending)
        rate = self._rate or 0.0
        base = start if start is not None else (pcr if pcr is not None else 0)
        chunks: list[tuple[int, bytes]] = []
        for i, packet in enumerate(pending):
            time = round(base + i * rate) - (self._first_pcr or 0)
            if not self._out:
                self._out_time = max(time, 0)
            self._out.append(packet)
            if len(self._out) == self.chunk_packets:
                chunks.append((self._out_time or 0, b"".join(self._out)))
                self._out = []
        if pcr is not None:
            self._last_pcr = pcr
        return chunks
