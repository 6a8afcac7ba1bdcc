"""One outgoing RTP stream: the sender side of one track in one session (RFC 3550).

Owns the random SSRC, sequence number and timestamp offset, turns access units into RTP
packets through the track's payload format, counts what it sent for sender reports, and
keeps the feedback receiver reports bring back. No sockets: it returns bytes.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction

from media.access_unit import AccessUnit
from streamd.rtp import rtcp
from streamd.rtp.clock import RTP_TS_MOD, ntp_middle32, seconds_to_rtp
from streamd.rtp.payload.base import PayloadFormat
from streamd.rtp.reception import ReceptionReport
from streamd.rtp.timeline import Timeline

MAX_SR_HISTORY = 16
RTP_HEADER = struct.Struct("!BBHII")  # V=2 P=0 X=0 CC=0 | M + PT | seq | timestamp | SSRC


WRAP_MARGIN = 1 << 20  # RTP ticks kept between the random timestamp offset and the 32-bit wrap


def _random_ts_offset() -> int:
    """A random initial RTP timestamp (RFC 3550 5.1), not within ``WRAP_MARGIN`` of the wrap.

    RTP-Info's rtptime is the Range start's timestamp, and packets stamped before it (AAC priming,
    B-frame reordering) go out first. ffmpeg takes rtptime as its base and the first packet's
    timestamp unsigned (libavformat/rtpdec.c ``finalize_packet``): if the wrap fell between the
    two, that packet would be 2^32 ticks (13 h at 90 kHz) late. Away from the wrap at the start,
    it cannot happen on the first PLAY."""
    return WRAP_MARGIN + secrets.randbelow((1 << 32) - 2 * WRAP_MARGIN)


class PayloadMemo:
    """RTP payloads of a cached file's access units, packetized once for all its sessions.

    Keyed by object identity, which is only sound for units that outlive the memo: the cache's
    own. Any other unit (a looped copy, a unit from a plain reader) is packetized as usual.
    """

    def __init__(self, unit_ids: frozenset[int]) -> None:
        self._unit_ids = unit_ids
        self._payloads: dict[tuple[int, int], list[tuple[bytes, bool, int]]] = {}

    def payloads(self, payload_format: PayloadFormat, au: AccessUnit) -> list[tuple[bytes, bool, int]]:
        if id(au) not in self._unit_ids:
            return payload_format.packetize_timed(au)
        key = (id(payload_format), id(au))
        payloads = self._payloads.get(key)
        if payloads is None:
            payloads = self._payloads[key] = payload_format.packetize_timed(au)
        return payloads


@dataclass
class OutgoingStream:
    """Sender state of one track. ``time_base`` is the unit of the AUs' PTS."""

    payload_format: PayloadFormat
    time_base: Fraction
    cname: str
    ssrc: int = field(default_factory=lambda: secrets.randbits(32))
    next_seq: int = field(default_factory=lambda: secrets.randbits(16))
    ts_offset: int = field(default_factory=_random_ts_offset)
    packet_count: int = 0
    octet_count: int = 0
    timeline: Timeline = field(default_factory=Timeline)  # set by the session at each PLAY
    payload_memo: PayloadMemo | None = None  # shared by the sessions of a cached file
    reception: ReceptionReport = field(default_factory=ReceptionReport)
    _sr_sent: dict[int, int] = field(default_factory=dict)  # NTP middle 32 bits -> NTP time sent

    @property
    def clock_rate(self) -> int:
        return self.payload_format.clock_rate

    _affine: tuple[Timeline, int, int, int, int] | None = None  # timeline, an, ad, bn, bd

    def timestamp_for(self, pts: int) -> int:
        """RTP timestamp of a PTS in the track's time base: offset + PTS in the RTP clock at Scale 1.

        Called for every access unit, so the timeline's map ``ticks = a * pts + b`` is kept as
        integer fractions and evaluated with integer arithmetic (exact, and no Fraction churn).
        """
        affine = self._affine
        if affine is None or affine[0] is not self.timeline:
            t = self.timeline
            a = self.time_base * self.clock_rate / t.scale
            b = (t.rtp_anchor - t.media_anchor / t.scale) * self.clock_rate
            affine = self._affine = (t, a.numerator, a.denominator, b.numerator, b.denominator)
        _, an, ad, bn, bd = affine
        num, den = pts * an * bd + bn * ad, ad * bd
        return (self.ts_offset + (2 * num + den) // (2 * den)) % RTP_TS_MOD  # nearest tick

    def timestamp_at(self, media_seconds: Fraction) -> int:
        """RTP timestamp of a media instant (file seconds), through the current timeline."""
        rtp_seconds = self.timeline.rtp_seconds(media_seconds)
        return (self.ts_offset + seconds_to_rtp(rtp_seconds, self.clock_rate)) % RTP_TS_MOD

    def packetize(self, au: AccessUnit) -> list[bytes]:
        """The RTP packets of one access unit, numbered and counted."""
        return self.packets(au)[0]

    def packets(self, au: AccessUnit) -> tuple[list[bytes], list[int] | None]:
        """The RTP packets of one access unit, numbered and counted, and their timestamp offsets.

        The offsets (RTP ticks after the AU's own timestamp, one per packet) are None when every
        packet carries the AU's timestamp; only PCM formats cut one AU into packets that start
        later. The sender needs them to pace those packets, and gets them without re-parsing.
        Called for every access unit of every session: the header is one ``struct`` pack.
        """
        base = self.timestamp_for(au.pts)
        pt = self.payload_format.payload_type
        pt_marked = pt | 0x80
        ssrc = self.ssrc
        seq = self.next_seq
        pack = RTP_HEADER.pack
        packets: list[bytes] = []
        offsets: list[int] | None = None
        octets = 0
        for payload, marker, offset in self._payloads(au):
            if offset:
                # PCM formats cut one AU into packets that start later: offset ticks of the RTP clock.
                timestamp = self.timestamp_at(au.pts * self.time_base + Fraction(offset, self.clock_rate))
                if offsets is None:
                    offsets = [0] * len(packets)
                offsets.append((timestamp - base) % RTP_TS_MOD)
            else:
                timestamp = base
                if offsets is not None:
                    offsets.append(0)
            packets.append(pack(0x80, pt_marked if marker else pt, seq, timestamp, ssrc) + payload)
            seq = (seq + 1) & 0xFFFF
            octets += len(payload)
        self.next_seq = seq
        self.packet_count += len(packets)
        self.octet_count += octets
        return packets, offsets

    def pack(self, ticks: int, payloads: Iterable[tuple[bytes, bool]]) -> list[bytes]:
        """Number and count already built payloads, all stamped ``ticks`` of the RTP clock (before
        the offset): how live readers and the multicast send put their headers on a path's shared
        payloads."""
        timestamp = (self.ts_offset + ticks) % RTP_TS_MOD
        pt = self.payload_format.payload_type
        ssrc, seq, pack = self.ssrc, self.next_seq, RTP_HEADER.pack
        packets: list[bytes] = []
        octets = 0
        for payload, marker in payloads:
            packets.append(pack(0x80, pt | 0x80 if marker else pt, seq, timestamp, ssrc) + payload)
            seq = (seq + 1) & 0xFFFF
            octets += len(payload)
        self.next_seq = seq
        self.packet_count += len(packets)
        self.octet_count += octets
        return packets

    def renew(self) -> None:
        """A new source after a BYE (RFC 3550 8.2): fresh SSRC and timestamp offset, counters zero."""
        self.ssrc, self.ts_offset = secrets.randbits(32), _random_ts_offset()
        self.packet_count = self.octet_count = 0

    def _payloads(self, au: AccessUnit) -> list[tuple[bytes, bool, int]]:
        """The AU's payloads; with a shared memo (cached files), computed once for every session."""
        if self.payload_memo is None:
            return self.payload_format.packetize_timed(au)
        return self.payload_memo.payloads(self.payload_format, au)

    def sender_report(self, ntp: int, media_seconds: Fraction) -> bytes:
        """SR + SDES for the wall instant ``ntp``, which the session maps to ``media_seconds``."""
        self._remember_sr(ntp)
        return rtcp.sender_report(
            self.ssrc, ntp, self.timestamp_at(media_seconds), self.packet_count, self.octet_count, self.cname
        )

    def goodbye(self, ntp: int, media_seconds: Fraction) -> bytes:
        """SR + SDES + BYE: the end of this stream."""
        self._remember_sr(ntp)
        return rtcp.goodbye(
            self.ssrc, ntp, self.timestamp_at(media_seconds), self.packet_count, self.octet_count, self.cname
        )

    def sr_sent_at(self, lsr: int) -> int | None:
        """The NTP time we sent the SR a receiver report's LSR field refers to."""
        return self._sr_sent.get(lsr)

    def _remember_sr(self, ntp: int) -> None:
        self._sr_sent[ntp_middle32(ntp)] = ntp
        while len(self._sr_sent) > MAX_SR_HISTORY:
            del self._sr_sent[next(iter(self._sr_sent))]
