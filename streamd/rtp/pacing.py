"""The pacing core of one on-demand session, sans I/O: which packets are due at ``now``.

It holds the session's queue of access units (read ahead by its caller), maps media time to the
caller's clock (``due = origin_wall + (dts - origin_media) / (scale x speed)``), numbers each
due unit's packets through the track's :class:`OutgoingStream`, holds packets that are due later
than their unit (PCM cut into 20 ms packets, or every packet after the first when spreading),
times the sender reports (RFC 3550 6.3.1) and the BYE after the last frame's time, and drops
what lies past the Range end. It never reads a clock, a file or a socket: :meth:`Pacing.pump`
takes ``now`` and returns the packets to send and when it is due next; ``wall_to_unix`` maps the
caller's clock to the NTP wall clock of the sender reports. ``streamd.playback`` is its adapter
(reader threads, the loop's ``Pacer``, the sinks).

Scale (RFC 2326 12.34) changes the media rate: up to ``trick_play_all_frames_up_to`` every video
frame is sent (fast-forward moves however long the GOP), beyond it video keyframes only, below 1
every video frame; RTP time runs at the normal rate (see ``streamd.rtp.timeline``). Audio is not
sent while Scale is not 1 (it cannot be played at another rate without resampling). Speed
(12.35) only makes delivery faster, timestamps unchanged.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

from media.access_unit import AccessUnit
from streamd.rtp.clock import unix_to_ntp
from streamd.rtp.outgoing import OutgoingStream
from streamd.rtp.rtcp_interval import MIN_INTERVAL, rtcp_interval

LOOKAHEAD = 1.0  # wall seconds of media kept queued ahead of sending
MEDIA_END_WAIT = 5.0  # the BYE waits at most this long for the last frame's time
BYE_DELAY = 0.05  # and then this much more, so it does not overtake the data
AVG_RTCP_SIZE = 28 + 52 + 20  # IP/UDP + SR + SDES of about a 20-byte CNAME
SPREAD_SHARE = 0.5  # a spread AU's packets leave over at most this share of its duration


@dataclass(frozen=True)
class PacingSettings:
    """Pacing knobs from the server configuration (defaults: today's behaviour)."""

    send_slack: float = 0.002  # the loop pacer: what is due this soon is sent in the same wake-up
    rtcp_min_interval: float = MIN_INTERVAL  # RFC 3550 Tmin of the sender reports (tests shorten it)
    precise: bool = False  # nothing early: the pacer's slack is 0, each AU leaves at its own time
    trick_play_all_frames_up_to: Fraction = Fraction(4)  # Scale up to this sends every video frame
    # seconds over which an AU's packets are spread (at most half its duration); 0: one burst. Off by
    # default: packets of one timestamp that arrive apart raise RFC 3550 jitter (jitter benchmark,
    # 20 ms: clean link 0.22 -> 8.3 ms; behind a shared bottleneck two sessions' spread packets
    # interleave, benchmarks/README.md "Precise pacing"); for links known slow
    spread: float = 0.0
    # precise mode spreads an AU's packets at this link rate (bit/s: each packet leaves when the one
    # before would have crossed a link of this rate, so the AU does not queue up in front of a slow
    # link), within SPREAD_SHARE of the AU. 0: no spreading. Not derived from the stream: the server
    # cannot know a link is slow, and spreading over a fast one only adds RFC 3550 jitter (packets of
    # one timestamp arriving apart; the AU's bitrate x 4 took clean-link video jitter 0.85 -> 7.7 ms)
    precise_rate: float = 0.0

    @property
    def pacer_slack(self) -> float:
        """The loop pacer's slack: precise mode sends nothing before its time."""
        return 0.0 if self.precise else self.send_slack

    @classmethod
    def from_config(cls, config: object) -> PacingSettings:
        """From a ``ServerConfig`` (its fields of the same meaning; absent ones keep the default)."""
        default = cls()
        return cls(
            send_slack=getattr(config, "send_slack", default.send_slack),
            rtcp_min_interval=getattr(config, "rtcp_min_interval", default.rtcp_min_interval),
            precise=getattr(config, "precise_pacing", default.precise),
            precise_rate=float(getattr(config, "precise_pacing_rate", default.precise_rate)),
            trick_play_all_frames_up_to=Fraction(
                getattr(config, "trick_play_all_frames_up_to", default.trick_play_all_frames_up_to)
            ).limit_denominator(1000),
        )


class Track(Protocol):
    """What the core needs of a set-up track (``streamd.playback.Binding`` is one)."""

    @property
    def stream(self) -> OutgoingStream: ...

    @property
    def is_video(self) -> bool: ...


class Pumped:
    """What one pump produced, in sending order (a plain slotted class: one is made per pump)."""

    __slots__ = ("finished", "more", "next_due", "read_until", "rtcp", "rtp")

    def __init__(self) -> None:
        self.rtp: list[tuple[int, list[bytes]]] = []  # (track index, packets)
        self.rtcp: list[tuple[int, bytes]] | tuple[()] = ()  # (track index, compound RTCP)
        self.next_due: float | None = None  # when to pump again (None: not until woken)
        self.read_until: float | None = None  # the caller should read AUs up to these media seconds
        self.finished: str | None = None  # the end of the stream has come: send the BYE
        self.more = False  # stopped at ``max_units``: pump again (after checking flow control)


class Pacing:
    """Queued access units of one session and the clock arithmetic that sends them on time."""

    def __init__(
        self,
        tracks: Mapping[int, Track],
        time_bases: Mapping[int, Fraction],
        settings: PacingSettings | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.tracks = tracks  # shared with the caller: a per-track TEARDOWN removes one here too
        self.settings = settings or PacingSettings()
        self._rng = rng
        self.seconds_per_tick = {i: float(tb) for i, tb in time_bases.items()}  # per track, for speed
        self._time_base_exact = dict(time_bases)
        self.queue: deque[AccessUnit] = deque()
        self.eof = False  # nothing more to read
        self.reading = False  # the caller has a read under way (the end waits for it)
        self.read_chunk = 2.0  # wall seconds of media one read should fetch
        self.position = Fraction(0)  # file seconds where a start (or resume) continues
        self.scale = Fraction(1)
        self.speed = Fraction(1)
        self.active = False
        self.end: Fraction | None = None  # file seconds where delivery stops (Range end)
        self.wall_to_unix: float | None = None  # Unix time minus the caller's clock
        self._crossed_end: set[int] = set()
        self._origin_wall = 0.0
        self._origin_media = Fraction(0)
        self._origin_float = 0.0
        self._rate_float = 1.0
        self._scale_one = True
        self._next_report = 0.0
        self._reports_sent = 0
        self._refill_at = float("-inf")
        self._ending_at: float | None = None
        self._last_sent: dict[int, AccessUnit] = {}
        self.held: dict[int, deque[tuple[float, bytes]]] = {}  # per track: packets due later

    # --- control ---------------------------------------------------------------------------

    def seek(self, position: Fraction) -> None:
        """A new read position: the queue is the reader's old one, dropped."""
        self.queue.clear()
        self.eof = False
        self.position = position

    def prepare(self, end: Fraction | None, scale: Fraction, speed: Fraction) -> None:
        """The parameters of a PLAY: Range end (file seconds), Scale and Speed."""
        self._last_sent = {}
        self.end = end
        self._crossed_end = set()
        if end is not None:
            self._drop_after_end()
        self.scale, self.speed = scale, speed

    def begin(self, now: float, wall_to_unix: float) -> None:
        """Start sending at ``now`` from ``position``; ``wall_to_unix`` maps ``now`` to Unix time."""
        self._origin_wall = now
        self._origin_media = self.position
        self._origin_float = float(self.position)
        self._rate_float = float(self.scale * self.speed)
        self.wall_to_unix = wall_to_unix
        self._next_report = now  # the first SR right after the first packets
        self._ending_at = None
        self._scale_one = self.scale == 1
        self._refill_at = float("-inf")
        self.active = True

    def halt(self, now: float) -> None:
        """Stop sending (pause): ``position`` becomes where the next start resumes.

        That is what was actually sent, not the wall clock: on a loaded machine the pump runs
        late, so units due by ``now`` may still be queued; they go out after the resume, and the
        PLAY's Range and RTP-Info must start at them (RFC 7826 18.40, 18.45)."""
        if self.active:
            self.position = self._next_unsent(now)
        self.active = False
        self._ending_at = None

    def _next_unsent(self, now: float) -> Fraction:
        """File time of the next unit to send: the first wanted queued one (its decoding time, the
        pacing clock: equal to its PTS but for reordered video), else where the last sent frame
        ends (nothing queued), else the wall clock's media instant (nothing sent yet, no queue)."""
        for au in self.queue:
            if au.stream_index in self.tracks and self.wanted(au):
                return au.dts * self._time_base_exact[au.stream_index]
        last_end = self.last_sent_end
        return last_end if last_end is not None else self.media_now(now)

    def finish(self, now: float) -> None:
        """The end has come: ``position`` is where the last frame sent ends (not past the Range end)."""
        last_end = self.last_sent_end
        self.position = last_end if last_end is not None else self.media_now(now)
        if self.end is not None and self.position > self.end:
            self.position = self.end
        self.active = False
        self._ending_at = None

    def take(self, units: list[AccessUnit], eof: bool) -> None:
        """Queue what the caller read."""
        self._refill_at = float("-inf")
        self.queue.extend(units)
        self.eof = eof
        if self.end is not None:
            self._drop_after_end()

    def wanted(self, au: AccessUnit) -> bool:
        """Scale 1 sends everything; other scales video only, keyframes only beyond the setting."""
        if self.scale == 1:
            return True
        track = self.tracks.get(au.stream_index)
        if track is None or not track.is_video:
            return False
        return au.keyframe or self.scale <= self.settings.trick_play_all_frames_up_to

    def wanted_tracks(self) -> set[int]:
        return {i for i, t in self.tracks.items() if self.scale == 1 or t.is_video}

    @property
    def rate(self) -> Fraction:
        """Media seconds per wall second."""
        return self.scale * self.speed

    def media_now(self, now: float) -> Fraction:
        """The media instant (file seconds) that ``now`` stands for while sending."""
        if not self.active:
            return self.position
        elapsed = Fraction(now - self._origin_wall).limit_denominator(1_000_000)
        return self._origin_media + elapsed * self.rate

    @property
    def last_sent_end(self) -> Fraction | None:
        """File time where the last sent frame ends (for the BYE and the position at the end)."""
        ends = [
            (max(au.pts, au.dts) + au.duration) * self._time_base_exact[index]
            for index, au in self._last_sent.items()
        ]
        return max(ends, default=None)

    # --- pacing ----------------------------------------------------------------------------

    def pump(self, now: float, horizon: float | None = None, *, max_units: int | None = None) -> Pumped:
        """Everything due up to ``horizon`` (default ``now``) and when to pump next."""
        out = Pumped()
        if not self.active:
            return out
        if horizon is None:
            horizon = now
        if self._ending_at is not None:
            if now + 0.0005 >= self._ending_at:
                out.finished = "end of stream"
            else:
                out.next_due = self._ending_at
            return out
        queue = self.queue
        if queue:
            tracks = self.tracks
            scale_one = self._scale_one
            origin_wall, origin, rate, time_base = (
                self._origin_wall,
                self._origin_float,
                self._rate_float,
                self.seconds_per_tick,
            )
            sent = 0
            while queue:
                au = queue[0]
                due = origin_wall + (au.dts * time_base[au.stream_index] - origin) / rate
                if due > horizon:
                    break
                queue.popleft()
                track = tracks.get(au.stream_index)
                if track is None or not (scale_one or self.wanted(au)):
                    continue
                self._emit(au, track, due, out)
                self._last_sent[au.stream_index] = au
                sent += 1
                if max_units is not None and sent >= max_units and queue:
                    out.more = True
                    return out
        if self.held:
            self.release_held(horizon, out)
        if now >= self._next_report:
            out.rtcp = self.reports(now)
            self._next_report = now + self._report_interval(now)
        if now >= self._refill_at:
            out.read_until = self._read_need(now)
        out.next_due = self.next_due(now)
        return out

    def next_due(self, now: float) -> float | None:
        """When the next thing is due: a unit, a held packet, a report, or the BYE at the end."""
        nxt = self._next_report
        queue = self.queue
        if queue:
            au = queue[0]
            due = (
                self._origin_wall
                + (au.dts * self.seconds_per_tick[au.stream_index] - self._origin_float) / self._rate_float
            )
            nxt = min(nxt, due)
        held_due = self._next_held()
        if held_due is not None:
            nxt = min(nxt, held_due)
        elif not queue and self.eof and not self.reading:
            self._ending_at = self._media_end_due(now)
            return self._ending_at
        return nxt

    def release_held(self, horizon: float, out: Pumped) -> None:
        """Held packets due by ``horizon`` (all of them with ``inf``: a pause sends them now)."""
        for index, held in self.held.items():
            if not held or held[0][0] > horizon:
                continue
            packets = []
            while held and held[0][0] <= horizon:
                packets.append(held.popleft()[1])
            if index in self.tracks:
                out.rtp.append((index, packets))

    def _emit(self, au: AccessUnit, track: Track, due: float, out: Pumped) -> None:
        """An AU's packets: now, or held until their own time (PCM packets stamped later than the
        first; with a precise rate or ``spread``, each packet after the first, spread over part
        of the AU)."""
        index = au.stream_index
        held = self.held.get(index)
        if held:  # what is still held for this track precedes this AU: keep the order
            out.rtp.append((index, [p for _, p in held]))
            held.clear()
        stream = track.stream
        packets, offsets = stream.packets(au)
        if not packets:
            return
        spread_dues = self._spread(au, packets) if offsets is None and len(packets) > 1 else None
        if offsets is None and spread_dues is None:
            out.rtp.append((index, packets))
            return
        if held is None:
            held = self.held[index] = deque()
        now_packets = [packets[0]]
        if offsets is not None:
            per_tick = 1 / (stream.clock_rate * self._rate_float)
            for packet, offset in zip(packets[1:], offsets[1:], strict=True):
                if offset == 0 and not held:
                    now_packets.append(packet)
                else:
                    held.append((due + offset * per_tick, packet))
        else:
            assert spread_dues is not None
            held.extend((due + after, packet) for after, packet in zip(spread_dues, packets[1:], strict=True))
        out.rtp.append((index, now_packets))

    def _spread(self, au: AccessUnit, packets: list[bytes]) -> list[float] | None:
        """Seconds after the AU's due time at which its 2nd, 3rd, ... packet leave, or None: one
        burst. The RTP timestamps stay the AU's: only the sending moves (RFC 3550 A.8 jitter is
        measured against them). Never beyond ``SPREAD_SHARE`` of the AU's duration, so the last
        packet leaves well before the next AU of the track is due (an AU without a duration: burst)."""
        settings = self.settings
        by_rate = settings.precise and settings.precise_rate > 0
        if not (by_rate or settings.spread):
            return None
        seconds = au.duration * self.seconds_per_tick[au.stream_index] / self._rate_float
        budget = seconds * SPREAD_SHARE
        if budget <= 0:
            return None
        if not by_rate:  # ``spread``: even steps over the spread time
            step = min(budget, settings.spread) / len(packets)
            return [i * step for i in range(1, len(packets))]
        sizes = [len(p) for p in packets[:-1]]
        per_byte = 8 / settings.precise_rate  # each packet once the one before has crossed the link
        total = sum(sizes) * per_byte
        if total > budget:
            per_byte *= budget / total
        dues, after = [], 0.0
        for size in sizes:
            after += size * per_byte
            dues.append(after)
        return dues

    def _next_held(self) -> float | None:
        if not self.held:
            return None
        return min((q[0][0] for q in self.held.values() if q), default=None)

    def _media_end_due(self, now: float) -> float:
        """When the BYE may go: once the last frame's time has come, so it arrives after the data."""
        wait = 0.0
        last_end = self.last_sent_end
        if last_end is not None:
            due = self._origin_wall + (float(last_end) - self._origin_float) / self._rate_float
            wait = min(max(due - now, 0.0), MEDIA_END_WAIT)
        return now + wait + BYE_DELAY

    def _read_need(self, now: float) -> float | None:
        """Keep about ``LOOKAHEAD`` of media queued: media seconds to read up to, or None."""
        if self.eof or self.reading:
            return None
        rate = self._rate_float
        media_now = self._origin_float + (now - self._origin_wall) * rate
        queued = self._queued_until()
        if queued >= media_now + LOOKAHEAD * rate:
            # nothing to read before the queue is down to LOOKAHEAD: skip the check until then
            self._refill_at = self._origin_wall + (queued - self._origin_float) / rate - LOOKAHEAD
            return None
        return media_now + self.read_chunk * rate

    def _queued_until(self) -> float:
        """Media seconds (DTS) of the last queued AU."""
        if not self.queue:
            return float("-inf")
        au = self.queue[-1]
        return au.dts * self.seconds_per_tick[au.stream_index]

    def _drop_after_end(self) -> None:
        """Range end: AUs decoded at or after it are not sent; once every track is past it, stop."""
        assert self.end is not None
        kept: deque[AccessUnit] = deque()
        for au in self.queue:
            if au.dts * self._time_base_exact[au.stream_index] >= self.end:
                self._crossed_end.add(au.stream_index)
            else:
                kept.append(au)
        self.queue = kept
        if set(self.tracks) <= self._crossed_end:
            self.eof = True

    # --- RTCP ------------------------------------------------------------------------------

    def clock_pair(self, now: float) -> tuple[int, Fraction]:
        """``now`` as NTP wall time and as media time: the sync point of every track's report."""
        assert self.wall_to_unix is not None, "begin() or a wall_to_unix first"
        return unix_to_ntp(now + self.wall_to_unix), self.media_now(now)

    def reports(self, now: float) -> list[tuple[int, bytes]]:
        """A sender report (SR + SDES) for every track, all at one NTP instant."""
        ntp, media = self.clock_pair(now)
        return [(i, t.stream.sender_report(ntp, media)) for i, t in self.tracks.items()]

    def goodbyes(self, now: float, indices: list[int] | None = None) -> list[tuple[int, bytes]]:
        """SR + SDES + BYE for every track (or those of ``indices``)."""
        ntp, media = self.clock_pair(now)
        chosen = self.tracks if indices is None else indices
        return [(i, self.tracks[i].stream.goodbye(ntp, media)) for i in chosen if i in self.tracks]

    def _report_interval(self, now: float) -> float:
        elapsed = max(now - self._origin_wall, 0.5)
        octets = sum(t.stream.octet_count for t in self.tracks.values())
        self._reports_sent += 1
        return rtcp_interval(
            members=2,
            senders=1,
            session_bandwidth=octets / elapsed,
            avg_rtcp_size=AVG_RTCP_SIZE,
            we_sent=True,
            initial=self._reports_sent == 1,
            rng=self._rng,
            min_interval=self.settings.rtcp_min_interval,
        )
