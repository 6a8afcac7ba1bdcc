"""The fan-out point of a live path: one publisher in, any number of readers out.

Incoming RTP of a track is depacketized into access units (for the formats we know), each unit
is packetized once, and the same payloads go to every reader, which only puts its own RTP
header (SSRC, sequence number, timestamp offset) in front. Payloads we do not know are relayed
as they came. Readers join at the live edge and start on a keyframe. No sockets here: readers
are handed sinks; a slow one loses packets (counted), never the publisher or the others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiortc.rtp import RtpPacket

from media import h264, h265
from media.access_unit import AccessUnit
from sdp import SessionDescription
from streamd.limits import WorkBudget
from streamd.live.announced import AnnouncedTrack
from streamd.live.reorder import ReorderDetector
from streamd.rtp.clock import ntp_to_unix
from streamd.rtp.payload.aac import AacDepacketizer, AacFormat, header_widths
from streamd.rtp.payload.base import Depacketizer
from streamd.rtp.payload.latm import LatmDepacketizer

log = logging.getLogger(__name__)

# Work one publisher may cause, in RTP packets in + access units + payloads out, per second: a
# 50 Mbit/s camera causes ~10,000; a publisher far beyond it is an attack on the event loop.
PUBLISHER_WORK_PER_SECOND = 50_000

Payloads = list[tuple[bytes, bool]]
# (track index, timestamp in the track clock since the first packet, payloads, keyframe, leading):
# ``leading`` marks an HEVC RASL picture, which a reader that started at the CRA before it skips
Listener = Callable[[int, int, Payloads, bool, bool], None]
# every access unit of a depacketized track, before packetizing (the recorder taps here)
UnitListener = Callable[["LiveTrack", AccessUnit], None]


def is_keyframe(codec: str, nal_units: tuple[bytes, ...]) -> bool:
    if codec == "h264":
        return any(h264.nal_type(n) in (5, 7) for n in nal_units)
    if codec == "hevc":
        return any(h265.is_irap(n) or h265.nal_type(n) == 32 for n in nal_units)
    return True


@dataclass
class LiveTrack:
    """One announced track: its depacketizer and the clock it is timestamped in."""

    announced: AnnouncedTrack
    depacketizer: Depacketizer | None
    first_ts: int | None = None
    last_ts: int | None = None  # unwrapped
    last_arrival: float = 0.0
    sender_ntp: float | None = None  # from the publisher's latest SR: wall time ...
    sender_ts: int | None = None  # ... and the (unwrapped, rebased) timestamp it maps to
    early_sr: tuple[int, int] | None = None  # an SR that came before the first RTP packet
    packets: int = 0
    ssrc: int | None = None  # the publisher's, from its latest RTP packet (a PLI names it)
    order: ReorderDetector = field(default_factory=ReorderDetector)  # B-frames (WebRTC converts)

    @property
    def index(self) -> int:
        return self.announced.index

    @property
    def clock_rate(self) -> int:
        return self.announced.payload_format.clock_rate

    def unwrap(self, timestamp: int) -> int:
        """The RTP timestamp as a count of ticks since this track's first packet."""
        if self.first_ts is None:
            self.first_ts = timestamp
            self.last_ts = 0
            return 0
        assert self.last_ts is not None
        previous = (self.first_ts + self.last_ts) & 0xFFFFFFFF
        step = (timestamp - previous + 2**31) % 2**32 - 2**31  # signed: reordering goes back a bit
        self.last_ts += step
        return self.last_ts

    def now_ticks(self, now_unix: float) -> int | None:
        """This track's timestamp for a wall instant (for readers' sender reports)."""
        if self.sender_ntp is not None and self.sender_ts is not None:
            return self.sender_ts + round((now_unix - self.sender_ntp) * self.clock_rate)
        if self.last_ts is None:
            return None
        return self.last_ts + round((now_unix - self.last_arrival) * self.clock_rate)


@dataclass
class LivePath:
    """A path with (at most) one publisher and any number of readers."""

    name: str
    description: SessionDescription
    tracks: dict[int, LiveTrack]
    publisher: str  # session id of the publisher
    readers: set[Listener] = field(default_factory=set)
    unit_listeners: set[UnitListener] = field(default_factory=set)
    online: bool = False
    units_in: int = 0
    budget: WorkBudget = field(default_factory=lambda: WorkBudget(PUBLISHER_WORK_PER_SECOND))
    # called once when the publisher overdraws its budget; the shell ends its session. Without
    # one, packets beyond the budget are dropped.
    on_overload: Callable[[str], None] | None = None
    overloaded: bool = False
    clock: Callable[[], float] = time.monotonic  # what the budget refills by (tests stop it)
    # asks the publisher for a keyframe (an RTSP publisher: RTCP PLI; WHIP: PLI on its peer
    # connection); None when the source cannot be asked. Viewers' PLI/FIR end up here.
    request_keyframe: Callable[[], None] | None = None

    @classmethod
    def from_announce(
        cls, name: str, description: SessionDescription, tracks: list[AnnouncedTrack], publisher: str
    ) -> LivePath:
        live = {}
        for t in tracks:
            live[t.index] = LiveTrack(t, _depacketizer(t, description))
        return cls(name, description, live, publisher)

    @classmethod
    def from_tracks(
        cls, name: str, tracks: list[AnnouncedTrack], publisher: str, started: float | None = None
    ) -> LivePath:
        """A path fed with access units by :meth:`push_unit` instead of RTP (e.g. a Python program).

        ``started`` is the wall time (Unix) of tick 0 of every track: readers' sender reports map
        it exactly, so players line audio up with video.
        """
        live = {t.index: LiveTrack(t, None) for t in tracks}
        if started is not None:
            for track in live.values():
                track.sender_ntp, track.sender_ts = started, 0
        return cls(name, SessionDescription(), live, publisher)

    def track_by_control(self, control: str) -> LiveTrack | None:
        for t in self.tracks.values():
            if t.announced.control == control or control.endswith("/" + t.announced.control):
                return t
        return None

    def on_rtp(self, track: LiveTrack, data: bytes) -> None:
        """One RTP packet from the publisher."""
        if not self.online or self.overloaded:
            return
        now = self.clock()
        if not self.budget.spend(0, now):  # overdrawn, and nobody to drop: shed packets meanwhile
            return
        work = 1 + self._on_rtp(track, data)
        if self.budget.spend(work, now) or self.on_overload is None:
            return
        self.overloaded = True
        reason = f"it causes more than {self.budget.rate:g} packets and units per second"
        log.warning("%s: dropping the publisher: %s", self.name, reason)
        self.on_overload(reason)

    def _on_rtp(self, track: LiveTrack, data: bytes) -> int:
        """Fan one packet out; the work it made (units and payloads)."""
        try:
            packet = RtpPacket.parse(data)
        except ValueError:
            return 0
        track.packets += 1
        track.ssrc = packet.ssrc
        ticks = track.unwrap(packet.timestamp)
        if track.early_sr is not None:  # ffmpeg sends its first SR just before its first packet
            early, track.early_sr = track.early_sr, None
            self.on_sender_report(track, *early)
        track.last_arrival = time.time()
        if track.depacketizer is None:
            self._fan_out(track.index, ticks, [(packet.payload, bool(packet.marker))], True, False)
            return 1
        work = 0
        for unit in track.depacketizer.push(
            packet.payload, bool(packet.marker), packet.timestamp, packet.sequence_number
        ):
            unit_ticks = track.unwrap(unit.timestamp) if unit.timestamp != packet.timestamp else ticks
            keyframe = is_keyframe(track.announced.track.codec, unit.nal_units)
            work += 1 + self._publish(
                track, AccessUnit(track.index, unit_ticks, unit_ticks, keyframe, unit.data, unit.nal_units)
            )
        return work

    def push_unit(self, index: int, au: AccessUnit) -> None:
        """One access unit made in this process (no RTP in between); ``au.pts`` in ticks since the start."""
        track = self.tracks.get(index)
        if track is None or not self.online:
            return
        track.last_ts = au.pts
        track.last_arrival = time.time()
        self._publish(track, au)

    def _publish(self, track: LiveTrack, au: AccessUnit) -> int:
        """Packetize once, hand the same payloads to every reader; how many payloads."""
        if not track.order.reordered:
            track.order.see(au.pts, au.keyframe)
            if track.order.reordered:
                log.info("%s: track %d has pictures out of order (B-frames)", self.name, track.index)
        for listener in list(self.unit_listeners):
            listener(track, au)
        payloads = track.announced.payload_format.packetize(au)
        self.units_in += 1
        leading = track.announced.track.codec == "hevc" and h265.is_rasl(au.nal_units)
        self._fan_out(track.index, au.pts, payloads, au.keyframe, leading)
        return len(payloads)

    def on_sender_report(self, track: LiveTrack, ntp: int, rtp_timestamp: int) -> None:
        if track.first_ts is None:
            track.early_sr = (ntp, rtp_timestamp)  # applied when the first packet sets the origin
            return
        track.sender_ntp = ntp_to_unix(ntp)
        track.sender_ts = (rtp_timestamp - track.first_ts + 2**31) % 2**32 - 2**31 + 0
        if track.last_ts is not None:  # bring it next to the unwrapped count
            track.sender_ts += (track.last_ts - track.sender_ts + 2**31) // 2**32 * 2**32

    def _fan_out(self, index: int, ticks: int, payloads: Payloads, keyframe: bool, leading: bool) -> None:
        for reader in list(self.readers):
            reader(index, ticks, payloads, keyframe, leading)


def _depacketizer(track: AnnouncedTrack, description: SessionDescription) -> Depacketizer | None:
    if not track.depacketize:
        return None
    if track.latm is not None and isinstance(track.payload_format, AacFormat):
        return LatmDepacketizer(track.latm, track.payload_format.samples_per_frame)
    if track.track.codec == "aac":
        section = description.media[track.index]
        fmtp = {k.lower(): v for k, v in section.fmtp(track.payload_format.payload_type).items()}
        try:
            return AacDepacketizer(*header_widths(fmtp))
        except ValueError:  # announced.py refuses these at ANNOUNCE; a relay's SDP is not checked
            return None
    return track.payload_format.depacketizer()
