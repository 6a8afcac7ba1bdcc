"""What a relay tells its upstream: RTCP receiver reports about the streams it pulls.

A relay is an RTP receiver like any player, and RFC 3550 6 asks receivers to report: the upstream
(a camera, another server) learns our loss, jitter and round-trip time, and many keep a session
alive on them. One ``ReceiverStats`` per track, fed with every packet's header; ``reports`` gives
one RR + SDES compound per track that has heard from its sender. No sockets here.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass, field

from streamd.rtp.receiver_stats import ReceiverStats
from streamd.rtp.rtcp import receiver_report

_HEADER = struct.Struct("!HII")  # sequence number, timestamp, SSRC (bytes 2..12 of RTP)


@dataclass
class _Reception:
    stats: ReceiverStats
    source: int | None = None  # the sender's SSRC


@dataclass
class UpstreamReports:
    cname: str
    ssrc: int = field(default_factory=lambda: secrets.randbits(32))
    octets: int = 0  # bytes received, for the RTCP interval
    _tracks: dict[int, _Reception] = field(default_factory=dict)

    def add_track(self, index: int, clock_rate: int) -> None:
        self._tracks[index] = _Reception(ReceiverStats(clock_rate))

    def on_rtp(self, index: int, data: bytes, arrival: float) -> None:
        reception = self._tracks.get(index)
        if reception is None or len(data) < 12 or data[0] >> 6 != 2:
            return
        seq, timestamp, ssrc = _HEADER.unpack_from(data, 2)
        if reception.source != ssrc:  # a new sender (or the first): start over, RFC 3550 A.1
            reception.source = ssrc
            reception.stats = ReceiverStats(reception.stats.clock_rate)
        reception.stats.receive(seq, timestamp, arrival)
        self.octets += len(data)

    def on_sender_report(self, index: int, ssrc: int, ntp_timestamp: int, arrival: float) -> None:
        reception = self._tracks.get(index)
        if reception is not None and reception.source == ssrc:
            reception.stats.sender_report(ntp_timestamp, arrival)

    def reports(self, now: float, *, bye: bool = False) -> list[tuple[int, bytes]]:
        """(track index, RR + SDES [+ BYE]) for every track whose sender we have heard."""
        out = []
        for index, reception in self._tracks.items():
            if reception.source is None:
                continue
            block = reception.stats.report_block(reception.source, now)
            out.append((index, receiver_report(self.ssrc, [block], self.cname, bye=bye)))
        return out
