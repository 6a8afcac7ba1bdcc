"""NACKs (RFC 4585 generic NACK) answered from one packet history per path stream, sans I/O.

A live path's payloads are made once and every WebRTC viewer sends them under its own header
(SSRC, sequence number, timestamp offset). So the history keeps the payloads once per stream
(a hub track, or a converter's output), numbered in the stream's own order, and each viewer
keeps only how its sequence numbers map onto those: runs of consecutive packets, a new run
wherever it skipped some (the keyframe gate, a congested socket) or changed streams. A NACK
then maps the viewer's numbers back to the stream's, and the packet is rebuilt with this
viewer's header, byte for byte what it sent first. Memory grows with the path, not its viewers.

Bounds: the history keeps the last ``capacity`` payloads and none older than ``max_age``
seconds (a packet the browser's jitter buffer has given up on is not worth sending); a NACK is
answered for at most ``MAX_PER_NACK`` packets; each viewer's retransmissions come out of a
token bucket, so a NACK storm costs at most its rate whatever it asks for.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

RTP_HEADER = struct.Struct("!BBHII")
HISTORY_PACKETS = 1024  # payloads per stream (~2.5 s at 4 Mbit/s of 1,400-byte payloads)
HISTORY_SECONDS = 1.0  # older packets are not resent: the browser stopped waiting for them
MAX_RUNS = 64  # gaps remembered per viewer (each skip or change of stream makes one)
MAX_PER_NACK = 64  # packets one NACK may have resent
RESEND_RATE = 200.0  # packets per second one viewer may have resent, on average ...
RESEND_BURST = 100.0  # ... and at once


def lost_sequences(lost: Iterable[int]) -> list[int]:
    """The 16-bit sequence numbers a parsed NACK names, once each, in order.

    aiortc's parser gives PID + d + 1 for each bit d of the BLP without the 16-bit wrap (a PID of
    65535 with bit 0 set names 0, not 65536): fixed here."""
    seen: dict[int, None] = {}
    for seq in lost:
        seen.setdefault(seq & 0xFFFF, None)
    return list(seen)


@dataclass(slots=True)
class Stored:
    """One payload of a stream as every viewer sent it (before its own header)."""

    payload: bytes
    marker: bool
    ticks: int  # the timestamp before a viewer's offset
    at: float  # when it went out


class PacketHistory:
    """The last payloads of one path stream, numbered in the stream's order (an int that does not
    wrap). Every viewer of the stream hands it each unit it sends; the unit is stored once (the
    same payload list goes to every viewer of a unit, one after the other)."""

    def __init__(self, capacity: int = HISTORY_PACKETS, max_age: float = HISTORY_SECONDS) -> None:
        self.capacity = capacity
        self.max_age = max_age
        self.next = 0  # the number the next payload gets
        self._ring: list[Stored | None] = [None] * capacity
        self._unit: object = None  # the payload list stored last, and its first number
        self._unit_first = 0

    def add(self, ticks: int, payloads: Sequence[tuple[bytes, bool]], now: float) -> int:
        """The number of the unit's first payload; stored unless it is the unit stored last."""
        if payloads is self._unit:
            return self._unit_first
        first = self.next
        ring, capacity = self._ring, self.capacity
        for payload, marker in payloads:
            ring[self.next % capacity] = Stored(payload, marker, ticks, now)
            self.next += 1
        self._unit, self._unit_first = payloads, first
        return first

    def get(self, number: int, now: float) -> Stored | None:
        """The payload numbered ``number``, if still kept and young enough to resend."""
        if not self.next - self.capacity <= number < self.next:
            return None
        stored = self._ring[number % self.capacity]
        if stored is None or now - stored.at > self.max_age:
            return None
        return stored

    def oldest(self) -> int:
        return max(0, self.next - self.capacity)


class Histories:
    """The packet histories of the streams WebRTC viewers get, one per stream (a live path's
    track, or a converter's), kept while a viewer holds it."""

    def __init__(self, capacity: int = HISTORY_PACKETS, max_age: float = HISTORY_SECONDS) -> None:
        self.capacity, self.max_age = capacity, max_age
        # (id of the source, track index) -> the source (keeps the id valid), its history, holders
        self._held: dict[tuple[int, int], tuple[object, PacketHistory, int]] = {}

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, source: object, index: int) -> PacketHistory:
        key = (id(source), index)
        held = self._held.get(key)
        if held is None:
            held = (source, PacketHistory(self.capacity, self.max_age), 0)
        self._held[key] = (held[0], held[1], held[2] + 1)
        return held[1]

    def release(self, history: PacketHistory) -> None:
        for key, (source, kept, holders) in self._held.items():
            if kept is history:
                if holders <= 1:
                    del self._held[key]
                else:
                    self._held[key] = (source, kept, holders - 1)
                return


@dataclass(slots=True)
class Run:
    """Consecutive packets of one viewer: its numbers ``first``.. are the stream's ``source``.."""

    first: int  # the viewer's 16-bit sequence number of the run's first packet
    history: PacketHistory
    source: int  # the stream's number of that packet
    count: int
    ts_offset: int  # the viewer's timestamp offset while it sent them
    last: float  # when it sent the latest of them


@dataclass
class Bucket:
    """A token bucket: ``rate`` a second, ``burst`` at once; a refusal costs nothing."""

    rate: float = RESEND_RATE
    burst: float = RESEND_BURST
    tokens: float = RESEND_BURST
    last: float | None = None

    def take(self, now: float) -> bool:
        if self.last is not None:
            self.tokens = min(self.burst, self.tokens + max(0.0, now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass
class ViewerSequence:
    """One viewer track's map from its sequence numbers to its stream's packet histories."""

    ssrc: int
    payload_type: int
    runs: deque[Run] = field(default_factory=deque)
    bucket: Bucket = field(default_factory=Bucket)
    resent: int = 0
    refused: int = 0  # asked for but not resent: gone from the history, or over the rate

    def sent(
        self, first: int, history: PacketHistory, source: int, count: int, ts_offset: int, now: float
    ) -> None:
        """The viewer sent ``count`` packets numbered from ``first``: the stream's ``source``.."""
        if count <= 0:
            return
        runs = self.runs
        last = runs[-1] if runs else None
        if (
            last is not None
            and last.history is history
            and last.ts_offset == ts_offset
            and last.source + last.count == source
            and (last.first + last.count) & 0xFFFF == first
        ):
            last.count += count
            last.last = now
        else:
            runs.append(Run(first, history, source, count, ts_offset, now))
        # forget what has left the histories: runs then span at most a history's worth of numbers
        # each (a few histories at most), so the 16-bit numbers cannot become ambiguous
        for run in runs:
            gone = run.history.oldest() - run.source
            if gone > 0:
                gone = min(gone, run.count)
                run.first, run.source, run.count = (
                    (run.first + gone) & 0xFFFF,
                    run.source + gone,
                    run.count - gone,
                )
            if now - run.last > run.history.max_age:
                run.count = 0  # a stream it no longer gets (it changed streams): nothing to resend
        while runs and (runs[0].count == 0 or len(runs) > MAX_RUNS):
            runs.popleft()

    def locate(self, seq: int) -> tuple[Run, int] | None:
        """The run holding the viewer's packet ``seq`` and the stream's number of it."""
        for run in reversed(self.runs):
            offset = (seq - run.first) & 0xFFFF
            if offset < run.count:
                return run, run.source + offset
        return None

    def answer(self, lost: Iterable[int], now: float) -> list[bytes]:
        """The packets to resend for one NACK, as the viewer sent them (before SRTP)."""
        out: list[bytes] = []
        for seq in lost_sequences(lost)[:MAX_PER_NACK]:
            found = self.locate(seq)
            stored = found[0].history.get(found[1], now) if found is not None else None
            if found is None or stored is None or not self.bucket.take(now):
                self.refused += 1
                continue
            pt = self.payload_type | 0x80 if stored.marker else self.payload_type
            timestamp = (found[0].ts_offset + stored.ticks) & 0xFFFFFFFF
            out.append(RTP_HEADER.pack(0x80, pt, seq, timestamp, self.ssrc) + stored.payload)
            self.resent += 1
        return out
