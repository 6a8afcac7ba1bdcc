"""The tc arguments each profile becomes (tc-netem(8), tc-tbf(8)); the namespace side runs in
the benchmark smoke test."""

from __future__ import annotations

from benchmarks.impair.kernel import qdisc_args
from benchmarks.impair.model import GilbertElliott, Profile
from benchmarks.impair.profiles import EXTRA, PROFILES

NETEM = frozenset({"netem", "tbf"})
TBF_ONLY = frozenset({"tbf"})


def test_every_udp_profile_is_netem() -> None:
    assert qdisc_args(PROFILES["clean"], NETEM) == []
    assert qdisc_args(PROFILES["loss-1pct"], NETEM) == ["netem", "limit", "10000", "loss", "random", "1%"]
    assert qdisc_args(PROFILES["jitter-30ms"], NETEM) == [
        "netem", "limit", "10000", "delay", "30ms", "10ms", "distribution", "normal",
    ]  # fmt: skip
    assert qdisc_args(EXTRA["jitter-pareto"], NETEM)[-1] == "pareto"  # type: ignore[index]
    bottleneck = qdisc_args(PROFILES["bottleneck-2mbit"], NETEM)
    assert bottleneck == ["netem", "limit", "10000", "rate", "2000000bit"]
    assert qdisc_args(EXTRA["reorder-dup"], NETEM) == [
        "netem", "limit", "10000", "delay", "10ms", "duplicate", "1%", "reorder", "2%",
    ]  # fmt: skip


def test_burst_loss_is_netems_gilbert_elliott_model() -> None:
    """netem's gemodel takes p, r, 1-h (loss in the bad state) and 1-k (loss in the good one)."""
    profile = Profile("b", burst=GilbertElliott(p=0.0125, r=0.25, loss_bad=1.0, loss_good=0.0))
    args = qdisc_args(profile, NETEM)
    assert args == ["netem", "limit", "10000", "loss", "gemodel", "1.25%", "25%", "100%", "0%"]


def test_without_netem_only_a_pure_bottleneck_is_shaped() -> None:
    assert qdisc_args(PROFILES["bottleneck-2mbit"], TBF_ONLY) == [
        "tbf", "rate", "2000000bit", "burst", "3200", "limit", "50000",
    ]  # fmt: skip
    assert qdisc_args(PROFILES["clean"], TBF_ONLY) == [] and qdisc_args(PROFILES["clean"], frozenset()) == []
    for name in ("loss-1pct", "burst-5pct", "jitter-30ms"):
        assert qdisc_args(PROFILES[name], TBF_ONLY) is None, name
    assert qdisc_args(Profile("r", rate_bps=2e6, delay_ms=5), TBF_ONLY) is None


def test_the_tcp_profile_stays_with_its_relay() -> None:
    """In-order delay for a byte stream is the TCP relay's; netem jitter would reorder."""
    assert qdisc_args(PROFILES["tcp-jitter-30ms"], NETEM) is None
