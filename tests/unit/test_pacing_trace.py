"""The send-schedule replay of the jitter benchmark (``benchmarks.impair.trace``,
``benchmarks.pacing_trace``): deterministic, so the mechanisms behind a jitter gap are pinned here."""

from __future__ import annotations

import itertools
import struct
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks import pacing_trace
from benchmarks.impair import trace
from benchmarks.impair.model import Profile
from benchmarks.impair.trace import Sent

LINK = Profile("2mbit", rate_bps=2_000_000, queue_bytes=50_000)
FRAME = 3600  # 90 kHz ticks of a 25 fps frame


def schedule(sessions: int = 2, offset: float = 0.0, frames: int = 100) -> list[Sent]:
    """Each session sends a 3-packet AU (1412, 1412, 600 bytes) every 40 ms, in one burst;
    session k starts ``k * offset`` later. Session 0's burst goes first when they coincide."""
    out = []
    for n in range(frames):
        for k in range(sessions):
            t = n * 0.040 + k * offset
            for i, size in enumerate((1412, 1412, 600)):
                out.append(
                    Sent(t + i * 1e-5 + k * 1e-4, k, 90000, size, marker=i == 2, seq=3 * n + i, ts=n * FRAME)
                )
    return sorted(out, key=lambda p: p.t)


def test_a8_jitter_is_zero_for_a_constant_transit_and_follows_the_rfc_filter() -> None:
    assert trace.a8_jitter([0.0, 0.040, 0.080], [0, FRAME, 2 * FRAME], 90000) == 0
    # one packet 1 ms late: |D| = 1 ms then 1 ms again, each entering with gain 1/16
    got = trace.a8_jitter([0.0, 0.041, 0.080], [0, FRAME, 2 * FRAME], 90000)
    first = 0.001 / 16
    assert got == pytest.approx(first + (0.001 - first) / 16)


def test_a_lone_burst_behind_the_link_is_spaced_by_serialization() -> None:
    packets = schedule(sessions=1)
    arrivals = trace.through(packets, LINK)
    first = [t for t in arrivals[:3] if t is not None]
    gaps = [b - a for a, b in itertools.pairwise(first)]
    assert gaps == pytest.approx([1412 * 8 / 2e6, 600 * 8 / 2e6])


def test_interleaving_two_sessions_bursts_doubles_video_jitter() -> None:
    """The relay once read one datagram per socket per wake-up: two sessions' bursts sent at the same
    moment reached the link alternately, and each session's packets crossed it at half the rate."""
    whole = trace.mean_jitter_ms(schedule(), LINK)
    mixed = trace.mean_jitter_ms(pacing_trace.interleaved(schedule()), LINK)
    alone = trace.mean_jitter_ms(schedule(sessions=1), LINK)
    apart = trace.mean_jitter_ms(schedule(offset=0.020), LINK)
    assert 1.9 * alone < mixed < 2.5 * alone
    assert apart == pytest.approx(alone, rel=0.01)
    assert whole < 1.5 * alone  # the second session waits behind the first's burst, spaced as alone


def test_spreading_at_the_link_rate_helps_one_session_but_not_two_in_phase() -> None:
    alone = trace.mean_jitter_ms(schedule(sessions=1), LINK)
    assert trace.mean_jitter_ms(pacing_trace.spread(schedule(sessions=1), 2e6), LINK) <= alone * 1.01
    assert trace.mean_jitter_ms(pacing_trace.spread(schedule(), 2e6), LINK) > 1.5 * alone


def test_recut_keeps_the_bytes_and_caps_the_size() -> None:
    packets = schedule(sessions=1, frames=2)
    cut = pacing_trace.recut(packets, 1400)
    assert max(p.size for p in cut) <= 1400
    assert sum(p.size - 14 for p in cut) == sum(p.size - 14 for p in packets)
    assert sorted({p.ts for p in cut}) == [0, FRAME]


def test_relay_records_parse_to_packets_and_round_trip(tmp_path: Path) -> None:
    head = struct.pack("!BBHII", 0x80, 0x80 | 96, 7, 1234, 0xABC)
    records = [
        (10.0, 5000, 1412, head),
        (10.001, 5001, 60, b"\x80\xc8" + bytes(10)),
        (10.002, 6000, 50, head),
    ]
    packets = trace.parse(records, {5000: (0, 90000)})
    assert packets == [
        Sent(10.0, 0, 90000, 1412, marker=True, seq=7, ts=1234),
        Sent(10.001, 0, 90000, 60, rtcp=True),
    ]
    path = trace.save(tmp_path, "srv", "clean", packets, [(0, 90000, 7, 10.0005)])
    assert [p.t for p in trace.load(path)] == [0.0, pytest.approx(0.001)]
    assert trace.load_received(path) == {(0, 90000, 7): pytest.approx(0.0005)}


def test_the_analysis_table_names_every_case() -> None:
    row = pacing_trace.analyse(schedule(frames=20), LINK)
    assert {"as sent video", "interleaved video", "+20 ms video", "spread at 2 Mbit/s video"} <= set(row)
    assert row["packets per AU"] == 3
    text = pacing_trace.markdown({"synthetic": row}, LINK)
    assert "| synthetic |" in text


def test_sender_steps_measure_the_typical_timing_error() -> None:
    on_time = schedule(sessions=1, frames=20)
    assert pacing_trace.sender_steps_ms(on_time, video=True) == pytest.approx(0, abs=1e-6)
    wobbly = [replace(p, t=p.t + (0.0005 if p.ts // FRAME % 2 else 0.0)) for p in on_time]
    assert pacing_trace.sender_steps_ms(wobbly, video=True) == pytest.approx(0.5)
