"""The sans-I/O pacing core with a clock the test moves: no sockets, no sleeping."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from fractions import Fraction

from aiortc.rtp import RtcpByePacket, RtcpSrPacket, RtpPacket

from media.access_unit import AccessUnit
from streamd.rtp.clock import ntp_to_unix
from streamd.rtp.outgoing import OutgoingStream
from streamd.rtp.pacing import BYE_DELAY, Pacing, PacingSettings, Pumped
from streamd.rtp.payload.base import PayloadFormat
from streamd.rtp.rtcp import parse_compound
from streamd.rtp.rtcp_interval import COMPENSATION
from streamd.rtp.timeline import Timeline

MS = Fraction(1, 1000)  # the AUs' time base: milliseconds
WALL_TO_UNIX = 1_700_000_000.0


class ChunkFormat(PayloadFormat):
    """10-byte payloads, 90 kHz clock: enough to see numbering, stamps and spreading."""

    encoding_name = "X"
    clock_rate = 90000
    encoding_params = None
    media = "video"

    def rtpmap(self) -> str:
        return f"{self.payload_type} X/90000"

    def fmtp(self) -> str | None:
        return None

    def packetize(self, au: AccessUnit) -> list[tuple[bytes, bool]]:
        chunks = [au.data[i : i + 10] for i in range(0, len(au.data), 10)] or [b""]
        return [(c, i == len(chunks) - 1) for i, c in enumerate(chunks)]

    def depacketizer(self):  # pragma: no cover - not needed here
        raise NotImplementedError


@dataclass
class Track:
    stream: OutgoingStream
    is_video: bool = True


def make(*tracks: bool, settings: PacingSettings | None = None) -> tuple[Pacing, dict[int, Track]]:
    bindings = {
        i: Track(OutgoingStream(ChunkFormat(96 + i), MS, cname="t", ts_offset=1000 * i), video)
        for i, video in enumerate(tracks or (True,))
    }
    core = Pacing(bindings, {i: MS for i in bindings}, settings, rng=random.Random(1))
    return core, bindings


def au(ms: int, *, index: int = 0, keyframe: bool = False, size: int = 10, dur: int = 40) -> AccessUnit:
    return AccessUnit(index, ms, ms, keyframe, bytes(size), duration=dur)


def gop_file(seconds: int, *, fps: int = 25, gop_seconds: int = 10) -> list[AccessUnit]:
    step = 1000 // fps
    return [au(t, keyframe=t % (gop_seconds * 1000) == 0, dur=step) for t in range(0, seconds * 1000, step)]


def start(
    core: Pacing, at: float = 0.0, *, scale: Fraction = Fraction(1), speed: Fraction = Fraction(1)
) -> None:
    core.prepare(None, scale, speed)
    for track in core.tracks.values():
        track.stream.timeline = Timeline(core.position, core.position, scale)
    core.begin(at, WALL_TO_UNIX)


def run(core: Pacing, until: float, step: float = 0.001) -> list[tuple[float, Pumped]]:
    """Pump at every ``step`` of the fake clock up to ``until``; what each pump produced."""
    log = []
    now = 0.0
    while now <= until + 1e-9:
        out = core.pump(now)
        if out.rtp or out.rtcp or out.finished:
            log.append((now, out))
        now = round(now + step, 6)
    return log


def sent_rtp(log: list[tuple[float, Pumped]]) -> list[tuple[float, RtpPacket]]:
    return [(t, RtpPacket.parse(p)) for t, out in log for _, packets in out.rtp for p in packets]


def test_units_are_due_at_their_media_time_over_scale_times_speed() -> None:
    core, _ = make()
    core.take([au(0), au(40), au(80), au(1000)], eof=True)
    start(core, speed=Fraction(2))
    times = [t for t, _ in sent_rtp(run(core, 0.6))]
    assert times == [0.0, 0.02, 0.04, 0.5]


def test_nothing_early_and_next_due_says_when() -> None:
    core, _ = make()
    core.take([au(0), au(40)], eof=False)
    start(core)
    out = core.pump(0.0)
    assert len(out.rtp) == 1 and out.next_due == 0.04
    assert core.pump(0.039).rtp == []
    assert len(core.pump(0.04).rtp) == 1


def test_slack_horizon_sends_what_is_due_soon() -> None:
    core, _ = make()
    core.take([au(0), au(1)], eof=False)
    start(core)
    assert len(core.pump(0.0, 0.002).rtp) == 2


def test_pause_keeps_the_position_and_resume_continues_there() -> None:
    core, _ = make()
    core.take([au(t) for t in range(0, 4000, 40)], eof=True)
    start(core, at=10.0)
    core.pump(10.0)
    core.pump(11.5)
    core.halt(11.5)
    assert core.position == Fraction(152, 100)  # the next frame not sent, not the wall clock
    assert not core.pump(12.0).rtp  # halted: nothing
    core.begin(20.0, WALL_TO_UNIX)
    out = core.pump(20.0)
    assert RtpPacket.parse(out.rtp[0][1][0]).timestamp == 1520 * 90  # the next frame, at once
    assert core.media_now(21.0) == Fraction(252, 100)


def test_a_pause_on_a_late_machine_resumes_at_what_was_sent_not_the_wall_clock() -> None:
    """The clock went on but the pump was late: the units due meanwhile were never sent, so the
    resume starts with them; RTP-Info (timestamp of ``position``, next seq) is the first packet's."""
    core, tracks = make(True, False)  # video + audio, interleaved
    units = sorted(
        [au(t, keyframe=t == 0) for t in range(0, 3000, 40)]
        + [au(t, index=1, dur=21) for t in range(0, 3000, 21)],
        key=lambda u: u.dts,
    )
    core.take(units, eof=True)
    start(core, at=10.0)
    sent = sent_rtp(run_from(core, 10.0, 11.0))
    core.halt(11.63)  # 630 ms late: the pump never ran for what fell due since 11.0
    assert Fraction(1) < core.position < Fraction(11, 10)
    assert core.position == core.queue[0].dts * MS
    head = core.queue[0].stream_index  # the track whose first unit is at the Range start
    left_at = core.position
    expected = {i: (t.stream.next_seq, t.stream.timeline.rtp_seconds(left_at)) for i, t in tracks.items()}
    for track in tracks.values():  # what Playback.prepare does on a resume (no seek)
        track.stream.timeline = track.stream.timeline.next_segment(left_at, core.position, Fraction(1))
    rtp_info = {i: (t.stream.next_seq, t.stream.timestamp_at(core.position)) for i, t in tracks.items()}
    assert {i: seq for i, (seq, _) in rtp_info.items()} == {i: seq for i, (seq, _) in expected.items()}
    core.begin(50.0, WALL_TO_UNIX)
    resumed = sent_rtp(run_from(core, 50.0, 53.0))
    first = {}
    for _, packet in resumed:
        first.setdefault(packet.payload_type - 96, packet)
    assert first[head].timestamp == rtp_info[head][1]
    for index, packet in first.items():
        assert packet.sequence_number == rtp_info[index][0]
        assert packet.timestamp >= rtp_info[index][1]
    # every unit exactly once, in order, across the pause
    for index in tracks:
        stamps = [p.timestamp for _, p in sent + resumed if p.payload_type - 96 == index]
        want = [tracks[index].stream.timestamp_at(u.pts * MS) for u in units if u.stream_index == index]
        assert stamps == want


def run_from(core: Pacing, begin: float, until: float, step: float = 0.01) -> list[tuple[float, Pumped]]:
    """Like ``run``, on a clock that starts at ``begin``."""
    log = []
    now = begin
    while now <= until + 1e-9:
        out = core.pump(now)
        if out.rtp or out.rtcp or out.finished:
            log.append((now, out))
        now = round(now + step, 6)
    return log


def test_range_end_drops_units_at_or_after_it_and_finishes_after_the_last_frame() -> None:
    core, _ = make()
    core.take([au(t) for t in range(0, 2000, 40)], eof=False)
    core.prepare(Fraction(1), Fraction(1), Fraction(1))
    assert core.eof  # the only track is past the end: nothing more to read
    start_at = 5.0
    core.begin(start_at, WALL_TO_UNIX)
    log = []
    now = start_at
    while now < start_at + 3:
        out = core.pump(now)
        log.append((now, out))
        if out.finished:
            break
        now = round(now + 0.001, 6)
    packets = sent_rtp(log)
    assert packets[-1][1].timestamp == 960 * 90
    finished_at = log[-1][0]
    assert log[-1][1].finished == "end of stream"
    # the BYE waits for the last frame's end (0.96 + 0.04 s) plus a little
    assert start_at + 1.0 + BYE_DELAY - 0.001 <= finished_at <= start_at + 1.0 + BYE_DELAY + 0.002
    core.finish(finished_at)
    assert core.position == 1


def test_bye_waits_for_the_last_frames_time_not_the_last_send() -> None:
    core, _ = make()
    core.take([au(0, dur=3000)], eof=True)
    start(core)
    out = core.pump(0.0)
    assert out.rtp and out.next_due is not None and abs(out.next_due - (3.0 + BYE_DELAY)) < 1e-9
    assert core.pump(2.0).finished is None
    assert core.pump(3.0 + BYE_DELAY).finished == "end of stream"


def test_end_waits_for_a_read_under_way() -> None:
    core, _ = make()
    core.take([], eof=False)
    start(core)
    out = core.pump(0.0)
    assert out.read_until is not None
    core.reading = True
    assert core.pump(0.1).finished is None
    core.reading = False
    core.take([au(200)], eof=True)
    assert core.pump(0.2).rtp


def test_sender_reports_map_ntp_to_the_rtp_time_of_the_same_instant() -> None:
    core, bindings = make(True, False)
    core.take([au(t, index=t // 20 % 2) for t in range(0, 3000, 20)], eof=True)
    start(core)
    log = run(core, 2.9)
    reports = [(t, i, p) for t, out in log for i, p in out.rtcp]
    assert reports and reports[0][0] == 0.0  # the first SR right after the first packets
    for t, index, packet in reports:
        sr = next(p for p in parse_compound(packet) if isinstance(p, RtcpSrPacket))
        unix = ntp_to_unix(sr.sender_info.ntp_timestamp)
        assert abs(unix - (t + WALL_TO_UNIX)) < 1e-6
        media_ticks = round(t * 90000)  # media time == wall time since the start at Scale 1
        offset = bindings[index].stream.ts_offset
        assert abs(sr.sender_info.rtp_timestamp - (offset + media_ticks)) <= 1


def test_rtcp_interval_follows_the_configured_minimum() -> None:
    core, _ = make(settings=PacingSettings(rtcp_min_interval=0.2))
    core.take([au(t, size=2000) for t in range(0, 10_000, 40)], eof=True)  # 50 kB/s: Tmin rules
    start(core)
    times = [t for t, out in run(core, 9.0) for _ in out.rtcp[:1]]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) > 20
    # (the first gap follows the bandwidth seen in the first instant: not checked)
    assert all(0.2 * 0.5 / COMPENSATION - 0.002 <= g <= 0.2 * 1.5 / COMPENSATION + 0.002 for g in gaps[1:])


def test_scale_2_on_a_long_gop_sends_every_frame_at_twice_the_rate() -> None:
    """Issue 13.3: a 10 s GOP at Scale 2 used to send one keyframe per 5 s of wall time."""
    core, _ = make()
    core.take(gop_file(12), eof=True)
    start(core, scale=Fraction(2))
    packets = sent_rtp(run(core, 5.0))
    times = [t for t, _ in packets]
    assert max(b - a for a, b in itertools.pairwise(times)) <= 0.5
    assert abs(times[-1] - 5.0) < 0.03  # media went 10 s in 5 s of wall time
    stamps = [p.timestamp for _, p in packets]
    assert stamps[1] - stamps[0] == 40 * 90 // 2  # RTP time at the normal rate (RFC 2326 12.34)


def test_beyond_the_setting_only_keyframes_are_sent() -> None:
    core, _ = make(settings=PacingSettings(trick_play_all_frames_up_to=Fraction(2)))
    core.take(gop_file(30, gop_seconds=2), eof=True)
    start(core, scale=Fraction(4))
    packets = sent_rtp(run(core, 1.9))  # 7.6 s of media: keyframes at 0, 2, 4, 6 s
    assert [p.timestamp // 90 for _, p in packets] == [0, 500, 1000, 1500]  # RTP time = media / 4


def test_audio_is_not_sent_at_other_scales() -> None:
    core, _ = make(True, False)
    core.take([au(0, index=0, keyframe=True), au(0, index=1), au(40, index=0)], eof=True)
    start(core, scale=Fraction(2))
    assert {i for _, out in run(core, 0.1) for i, _ in out.rtp} == {0}


def test_spread_sends_an_au_over_part_of_its_duration() -> None:
    core, _ = make(settings=PacingSettings(spread=0.02))
    core.take([au(0, size=100, dur=40), au(40, size=100, dur=40)], eof=True)
    start(core)
    log = run(core, 0.1, step=0.0005)
    times = [t for t, _ in sent_rtp(log)]
    assert len(times) == 20
    first = times[:10]
    assert first[0] == 0.0 and 0.015 <= first[-1] <= 0.021 and len(set(first)) > 5
    assert times[10] == 0.04  # the next AU still starts on time


def test_burst_mode_sends_an_au_at_once() -> None:
    core, _ = make()
    core.take([au(0, size=100)], eof=True)
    start(core)
    out = core.pump(0.0)
    assert [len(p) for _, p in out.rtp] == [10]


def test_max_units_stops_for_flow_control_and_continues() -> None:
    core, _ = make()
    core.take([au(0), au(0), au(0)], eof=True)
    start(core)
    out = core.pump(0.0, max_units=1)
    assert out.more and len(out.rtp) == 1
    out = core.pump(0.0, max_units=1)
    assert out.more
    out = core.pump(0.0, max_units=1)
    assert not out.more and out.rtcp  # the last batch goes on to the report


def test_goodbye_for_one_track() -> None:
    core, _ = make(True, False)
    core.wall_to_unix = WALL_TO_UNIX
    ((index, packet),) = core.goodbyes(1.0, [1])
    assert index == 1 and any(isinstance(p, RtcpByePacket) for p in parse_compound(packet))


def test_settings_come_from_the_server_config() -> None:
    from streamd.config import ServerConfig

    config = ServerConfig(send_slack=0.0005, precise_pacing=True, rtcp_min_interval=0.5)
    settings = PacingSettings.from_config(config)
    assert settings == PacingSettings(0.0005, 0.5, True, Fraction(4), 0.0)
    assert PacingSettings.from_config(object()) == PacingSettings()


def test_precise_mode_sends_nothing_early() -> None:
    assert PacingSettings(send_slack=0.002, precise=True).pacer_slack == 0.0
    assert PacingSettings(send_slack=0.003).pacer_slack == 0.003
