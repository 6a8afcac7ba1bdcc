"""The impairment model: repeatable, and its rates, bursts and bottleneck are what was asked."""

from __future__ import annotations

import itertools
import statistics

import pytest

from benchmarks.impair.model import GilbertElliott, Impairment, Profile

N = 100_000


def run(
    profile: Profile, seed: int = 1, n: int = N, size: int = 1000, gap: float = 0.001
) -> list[list[float]]:
    link = Impairment(profile, seed)
    return [link.process(i * gap, size) for i in range(n)]


def test_same_seed_same_fate_other_seed_differs() -> None:
    profile = Profile("x", loss=0.05, delay_ms=20, jitter_ms=5, duplicate=0.01, reorder=0.01)
    assert run(profile, seed=7, n=5000) == run(profile, seed=7, n=5000)
    assert run(profile, seed=7, n=5000) != run(profile, seed=8, n=5000)


def test_mechanisms_draw_independently() -> None:
    """Adding jitter does not change which packets are lost."""
    lost = [not t for t in run(Profile("a", loss=0.05), n=5000)]
    lost_jittered = [not t for t in run(Profile("b", loss=0.05, jitter_ms=10), n=5000)]
    assert lost == lost_jittered


def test_random_loss_rate() -> None:
    out = run(Profile("x", loss=0.01))
    # binomial sd at 1% of 100k packets is ~31 packets: 5 sd either side
    assert sum(1 for t in out if not t) == pytest.approx(1000, abs=160)


def test_gilbert_elliott_rate_and_burst_lengths() -> None:
    ge = GilbertElliott.from_loss(0.05, mean_burst=4)
    assert ge.loss_rate == pytest.approx(0.05)
    out = run(Profile("x", burst=ge), n=200_000)
    lost = [not t for t in out]
    assert sum(lost) / len(lost) == pytest.approx(0.05, rel=0.1)
    bursts, run_length = [], 0
    for flag in [*lost, False]:
        if flag:
            run_length += 1
        elif run_length:
            bursts.append(run_length)
            run_length = 0
    # geometric bursts with mean 1/r = 4 packets (random loss would give ~1.05)
    assert statistics.mean(bursts) == pytest.approx(4, rel=0.1)


def test_duplicates() -> None:
    out = run(Profile("x", duplicate=0.02))
    assert sum(1 for t in out if len(t) == 2) == pytest.approx(2000, abs=220)


def test_normal_jitter_mean_and_spread() -> None:
    delays = [t[0] - i * 0.001 for i, t in enumerate(run(Profile("x", delay_ms=30, jitter_ms=10)))]
    assert statistics.mean(delays) == pytest.approx(0.030, abs=0.0005)
    assert statistics.stdev(delays) == pytest.approx(0.010, rel=0.05)


def test_pareto_jitter_is_skewed_right() -> None:
    profile = Profile("x", delay_ms=50, jitter_ms=10, distribution="pareto")
    delays = [t[0] - i * 0.001 for i, t in enumerate(run(profile))]
    assert statistics.mean(delays) == pytest.approx(0.050, abs=0.001)
    assert statistics.median(delays) < statistics.mean(delays)  # long right tail
    assert max(delays) - 0.050 > 5 * (0.050 - min(delays))


def test_reorder_skips_the_delay() -> None:
    out = run(Profile("x", delay_ms=10, reorder=0.05))
    undelayed = sum(1 for i, t in enumerate(out) if t[0] == pytest.approx(i * 0.001))
    assert undelayed == pytest.approx(5000, abs=350)


def test_keep_order_never_reorders() -> None:
    out = run(Profile("x", delay_ms=30, jitter_ms=10, keep_order=True), n=5000)
    times = [t[0] for t in out]
    assert times == sorted(times)


def test_bottleneck_paces_at_the_rate_and_drops_when_the_queue_is_full() -> None:
    # 1000-byte packets every 1 ms = 8 Mbit/s offered into 2 Mbit/s: three in four are dropped
    link = Impairment(Profile("x", rate_bps=2_000_000, queue_bytes=20_000), seed=1)
    out = [link.process(i * 0.001, 1000) for i in range(4000)]
    sent = sorted(t[0] for t in out if t)
    assert len(sent) / 4000 == pytest.approx(0.25, abs=0.01)
    gaps = [b - a for a, b in itertools.pairwise(sent[100:])]
    assert min(gaps) == pytest.approx(0.004)  # 8000 bits at 2 Mbit/s, back to back
    # queueing delay never exceeds the buffer's drain time (20 kB at 2 Mbit/s = 80 ms) + one packet
    assert max(t[0] - i * 0.001 for i, t in enumerate(out) if t) <= 0.084 + 1e-9
    assert link.counters.lost_queue == 4000 - len(sent)


def test_bottleneck_below_capacity_loses_nothing() -> None:
    out = run(Profile("x", rate_bps=10_000_000), n=10_000)  # 8 Mbit/s into 10
    assert all(t for t in out)
    assert max(t[0] - i * 0.001 for i, t in enumerate(out)) == pytest.approx(0.0008)
