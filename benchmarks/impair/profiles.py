"""The named impairment profiles the jitter/loss benchmark runs (server -> receiver direction)."""

from __future__ import annotations

from benchmarks.impair.model import GilbertElliott, Profile

PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("clean"),
        Profile("loss-1pct", loss=0.01),
        Profile("burst-5pct", burst=GilbertElliott.from_loss(0.05, mean_burst=4)),
        Profile("jitter-30ms", delay_ms=30, jitter_ms=10),
        Profile("bottleneck-2mbit", rate_bps=2_000_000, queue_bytes=50_000),
        # the TCP path: a byte stream can only be delayed in order (TCP retransmits what is lost)
        Profile("tcp-jitter-30ms", delay_ms=30, jitter_ms=10, keep_order=True, transport="tcp"),
    )
}
EXTRA: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("jitter-pareto", delay_ms=30, jitter_ms=10, distribution="pareto"),
        Profile("reorder-dup", delay_ms=10, reorder=0.02, duplicate=0.01),
    )
}


def reverse_of(profile: Profile) -> Profile:
    """The receiver -> server direction: the same delay and jitter (so RTT is meaningful), no loss.

    RTCP receiver reports are few; losing one would only make the comparison wait for the next.
    """
    return Profile(f"{profile.name}-reverse", delay_ms=profile.delay_ms, jitter_ms=profile.jitter_ms,
                   distribution=profile.distribution, keep_order=profile.keep_order,
                   transport=profile.transport)  # fmt: skip
