"""Precise pacing spreads an access unit's packets; a clock the test moves, no sockets, no sleeping."""

from __future__ import annotations

import asyncio
import itertools
import time

import uvloop
from aiortc.rtp import RtpPacket

from streamd.playback import clock_tick, wall_offset
from streamd.rtp.pacing import SPREAD_SHARE, PacingSettings, Pumped
from tests.unit.test_pacing_core import au, make, run, sent_rtp, start

PACKET = 12 + 10  # the test format's RTP packet: header + 10-byte chunk
PRECISE = PacingSettings(precise=True, precise_rate=PACKET * 8 / 0.001)  # a packet per millisecond


def precise_log(settings: PacingSettings = PRECISE, *, size: int = 100, dur: int = 40, frames: int = 3):
    core, _ = make(settings=settings)
    core.take([au(i * dur, size=size, dur=dur) for i in range(frames)], eof=True)
    start(core)
    return core, sent_rtp(run(core, frames * dur / 1000, step=0.0001))


def test_packets_of_an_au_leave_spread_and_in_order_with_its_timestamp() -> None:
    _, packets = precise_log()
    assert len(packets) == 30
    first = packets[:10]
    times = [t for t, _ in first]
    assert times[0] == 0.0 and times == sorted(times) and len(set(times)) == 10
    assert abs(times[-1] - 0.009) <= 0.0002  # nine packets after the first, 1 ms apart
    assert {p.timestamp for _, p in first} == {0}  # only the sending moves, never the RTP time
    seqs = [p.sequence_number for _, p in packets]
    assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(seqs))  # sequence order kept
    assert [p.timestamp for _, p in packets[10:20]] == [40 * 90] * 10
    assert packets[10][0] == 0.04  # the next AU starts on its own time


def test_a_configured_link_rate_spaces_packets_by_their_size() -> None:
    rate = 88_000.0  # bit/s: one 22-byte packet per 2 ms
    _, packets = precise_log(PacingSettings(precise=True, precise_rate=rate))
    times = [t for t, _ in packets[:10]]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(abs(g - PACKET * 8 / rate) <= 0.00015 for g in gaps), gaps


def test_a_slow_link_rate_is_capped_so_the_last_packet_precedes_the_next_au() -> None:
    _, packets = precise_log(PacingSettings(precise=True, precise_rate=8_000.0))  # 22 ms a packet
    per_au = [[t for t, _ in packets[i : i + 10]] for i in range(0, 30, 10)]
    for n, times in enumerate(per_au):
        due = n * 0.04
        assert times[0] == due
        assert times[-1] <= due + 0.04 * SPREAD_SHARE + 0.0002  # within half the interval
        assert times[-1] < due + 0.04  # long before the next AU


def test_pump_returns_only_what_is_due_and_next_due_names_the_next_packet() -> None:
    core, _ = make(settings=PacingSettings(precise=True, precise_rate=176_000.0))
    core.take([au(0, size=30, dur=40), au(40, size=30, dur=40)], eof=True)
    start(core)
    out = core.pump(0.0)
    assert [len(p) for _, p in out.rtp] == [1]
    assert out.next_due is not None and abs(out.next_due - 0.001) < 1e-9
    assert core.pump(0.0009).rtp == []
    out = core.pump(0.001)
    assert [len(p) for _, p in out.rtp] == [1] and abs(out.next_due - 0.002) < 1e-9
    out = core.pump(0.0015, horizon=0.0025)  # a pacer's slack: what is due by the horizon
    assert [len(p) for _, p in out.rtp] == [1] and abs(out.next_due - 0.04) < 1e-9


def test_a_one_packet_au_is_not_held() -> None:
    core, _ = make(True, False, settings=PRECISE)
    core.take([au(0, index=1, size=10, dur=20), au(20, index=1, size=10, dur=20)], eof=True)
    start(core)
    out = core.pump(0.0)
    assert [(i, len(p)) for i, p in out.rtp] == [(1, 1)] and not core.held


def test_sender_reports_come_at_the_same_times_as_without_spreading() -> None:
    def report_times(settings: PacingSettings) -> list[float]:
        core, _ = make(settings=settings)
        core.take([au(t, size=2000, dur=40) for t in range(0, 6000, 40)], eof=True)  # 50 kB/s
        start(core)
        return [t for t, out in run(core, 5.9) for _ in out.rtcp[:1]]

    burst = report_times(PacingSettings(rtcp_min_interval=0.5))
    precise = report_times(PacingSettings(rtcp_min_interval=0.5, precise=True))
    assert len(burst) > 5 and precise == burst


def test_held_packets_go_before_the_next_au_of_their_track() -> None:
    """A caller pumping late (a loaded loop) still sends an AU's last packets before the next AU."""
    core, _ = make(settings=PRECISE)
    core.take([au(0, size=100, dur=40), au(40, size=100, dur=40)], eof=True)
    start(core)
    core.pump(0.0)
    out = core.pump(0.05)  # late: the rest of AU 0, then AU 1's packets due by now
    stamps = [RtpPacket.parse(p).timestamp for _, packets in out.rtp for p in packets]
    assert stamps[:10] == [0] * 9 + [40 * 90] and stamps == sorted(stamps)


def test_pause_sends_what_is_held_at_once() -> None:
    core, _ = make(settings=PRECISE)
    core.take([au(0, size=100, dur=40)], eof=True)
    start(core)
    core.pump(0.0)
    core.halt(0.001)
    assert core.pump(0.002).rtp == []  # halted: nothing
    rest = Pumped()
    core.release_held(float("inf"), rest)
    assert sum(len(p) for _, p in rest.rtp) == 9


def test_default_mode_and_precise_mode_without_a_rate_send_an_au_as_one_burst() -> None:
    for settings in (PacingSettings(), PacingSettings(precise=True)):
        core, _ = make(settings=settings)
        core.take([au(0, size=100, dur=40)], eof=True)
        start(core)
        out = core.pump(0.0)
        assert [len(p) for _, p in out.rtp] == [10] and not core.held


def test_the_rate_comes_from_the_server_config() -> None:
    from streamd.config import ServerConfig

    config = ServerConfig(precise_pacing=True, precise_pacing_rate=2e6)
    assert PacingSettings.from_config(config).precise_rate == 2e6
    assert PacingSettings.from_config(ServerConfig()).precise_rate == 0.0


def test_the_pacer_slack_covers_uvloops_millisecond_clock() -> None:
    """uvloop counts whole milliseconds: a slack of 0 made the pacer spin on empty wake-ups."""
    loop = uvloop.new_event_loop()
    try:
        assert clock_tick(loop) == 0.001
    finally:
        loop.close()
    loop = asyncio.new_event_loop()
    try:
        assert clock_tick(loop) == 0.0
    finally:
        loop.close()


def test_sender_reports_are_never_stamped_ahead_of_the_wall_clock() -> None:
    """An SR's NTP time is the loop's clock plus ``wall_offset()``: under uvloop's whole-millisecond
    clock it must never run ahead of the real time, or a receiver's LSR/DLSR arithmetic gives the
    server a round trip below zero (and the server then shows none)."""

    async def check() -> None:
        loop = asyncio.get_running_loop()
        offset = wall_offset()
        for _ in range(5000):
            stamped = loop.time() + offset
            assert stamped <= time.time() + 1e-6
            await asyncio.sleep(0)

    uvloop.run(check())
