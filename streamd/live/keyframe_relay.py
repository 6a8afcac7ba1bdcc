"""Keyframe requests passed on to an RTSP publisher, sans I/O.

Viewers of a live path (WHEP peers, RTSP players) send PLI/FIR when they need a keyframe; the
path asks its publisher with one RTCP PLI (RFC 4585) per video track, naming the SSRC the
publisher's RTP carries. Many viewers asking at once make one request: the path's requests are
rate-limited. Where the PLI goes is the way the publisher's RTCP came in its SETUP: its RTCP
port over UDP (sent from our RTCP port), or its interleaved RTCP channel over TCP. This module
decides what to send and where; the shell (``streamd.publishing``) sends it.

An SRTP publisher that speaks MIKEY is given a key of ours per track (``KeyMgmt`` in the
ANNOUNCE and SETUP replies, its crypto session naming our SSRC): GStreamer's ``srtpdec`` looks
the key for our RTCP up by its sender SSRC among the keys it was told, and drops what it has no
key for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streamd.live.hub import LivePath
from streamd.rtp.rtcp import picture_loss
from streamd.srtp.offer import TrackKey
from streamd.srtp.suites import DEFAULT_SUITE, MasterKey, Suite

PLI_INTERVAL = 0.5  # seconds: a path's publisher gets at most one keyframe request this often

Address = tuple[str, int]


@dataclass(frozen=True)
class UdpBack:
    """The publisher's RTCP port (from ``client_port`` in its SETUP)."""

    address: Address


@dataclass(frozen=True)
class ChannelBack:
    """The interleaved RTCP channel on the publisher's RTSP connection."""

    channel: int


Way = UdpBack | ChannelBack


@dataclass(frozen=True)
class Pli:
    """One RTCP compound (RR + SDES + PLI) for track ``index``, to be sent ``way``."""

    index: int
    way: Way
    packet: bytes


@dataclass
class RateLimit:
    """At most one pass per ``interval`` seconds of the clock it is given."""

    interval: float = PLI_INTERVAL
    last: float | None = None

    def allow(self, now: float) -> bool:
        if self.last is not None and now - self.last < self.interval:
            return False
        self.last = now
        return True


@dataclass
class PublisherFeedback:
    """Where a path's keyframe requests go, and how often.

    ``ssrc`` is ours (the PLI's sender); each video track's media SSRC is the one its publisher's
    latest RTP packet carried, so a track that has sent nothing yet is not asked.
    """

    live: LivePath
    ssrc: int
    cname: str
    limit: RateLimit = field(default_factory=RateLimit)
    ways: dict[int, Way] = field(default_factory=dict)  # track index -> the way back
    keys: dict[int, TrackKey] = field(default_factory=dict)  # track index -> our SRTCP key, told

    def our_key(self, index: int, suite: Suite = DEFAULT_SUITE) -> TrackKey:
        """Our key for RTCP to track ``index``'s publisher (made once), for a MIKEY ``KeyMgmt``
        naming our SSRC."""
        key = self.keys.get(index)
        if key is None:
            key = self.keys[index] = TrackKey(MasterKey.generate(suite), self.ssrc)
        return key

    def key_for(self, index: int) -> MasterKey | None:
        """The key our RTCP to track ``index`` goes under when the publisher was told one."""
        key = self.keys.get(index)
        return key.key if key is not None else None

    def route(self, index: int, way: Way) -> None:
        """Track ``index`` was set up (again) with this way back."""
        self.ways[index] = way

    def request(self, now: float) -> list[Pli]:
        """The PLIs to send for one keyframe request at ``now``; none within the rate limit."""
        targets = [
            (index, way, track.ssrc)
            for index, way in sorted(self.ways.items())
            if (track := self.live.tracks.get(index)) is not None
            and track.announced.track.kind == "video"
            and track.ssrc is not None
        ]
        if not targets or not self.limit.allow(now):
            return []
        return [Pli(index, way, picture_loss(self.ssrc, ssrc, self.cname)) for index, way, ssrc in targets]
