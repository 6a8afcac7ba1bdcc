"""The impairment model: what a network does to one direction of traffic, sans-I/O and seeded.

``Impairment.process(now, size)`` takes a packet offered at ``now`` (seconds) and returns the
times it leaves the impaired link: empty when lost, two entries when duplicated. The relays only
schedule those times. Each mechanism draws from its own seeded generator, so enabling one never
shifts another's choices, and the same seed loses the same packets on every run (the rate
limiter's queue drops alone depend on arrival times, which no seed can fix).

Semantics follow netem where it defines them: loss and burst loss first, then duplication, then
the bottleneck (a FIFO with a byte limit, tail drop), then delay with jitter; ``reorder`` is the
probability that a packet skips the delay (and so overtakes those before it), and jitter may
reorder too, as in netem, unless ``keep_order``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Literal

PARETO_SHAPE = 3.0  # heavy right tail, finite variance


@dataclass(frozen=True)
class GilbertElliott:
    """Two-state burst loss: Good --p--> Bad --r--> Good; loss probability per state."""

    p: float  # P(good -> bad) per packet
    r: float  # P(bad -> good) per packet: bursts last 1/r packets on average
    loss_bad: float = 1.0
    loss_good: float = 0.0

    @classmethod
    def from_loss(cls, rate: float, mean_burst: float) -> GilbertElliott:
        """The chain whose long-run loss is ``rate`` in bursts of ``mean_burst`` packets on average."""
        r = 1 / mean_burst
        return cls(p=rate * r / (1 - rate), r=r)

    @property
    def loss_rate(self) -> float:
        bad = self.p / (self.p + self.r) if self.p + self.r else 0.0
        return bad * self.loss_bad + (1 - bad) * self.loss_good


@dataclass(frozen=True)
class Profile:
    """One named set of impairments for one direction of a link."""

    name: str
    delay_ms: float = 0.0
    jitter_ms: float = 0.0  # standard deviation of the added delay
    distribution: Literal["normal", "pareto"] = "normal"
    loss: float = 0.0  # independent random loss, 0..1
    burst: GilbertElliott | None = None
    duplicate: float = 0.0
    reorder: float = 0.0  # probability a packet skips the delay
    rate_bps: float | None = None  # bottleneck; None = unlimited
    queue_bytes: int = 64_000  # bottleneck buffer (tail drop when full)
    keep_order: bool = False  # jitter never reorders (what a TCP byte stream needs)
    transport: Literal["udp", "tcp"] = "udp"  # tcp: RTP interleaved on RTSP, through a TcpRelay

    @property
    def expected_loss(self) -> float:
        """Long-run loss from the random and burst mechanisms (not the bottleneck's queue)."""
        burst = self.burst.loss_rate if self.burst else 0.0
        return 1 - (1 - self.loss) * (1 - burst)

    def describe(self) -> str:
        parts = []
        if self.delay_ms or self.jitter_ms:
            parts.append(f"delay {self.delay_ms:g} ms ± {self.jitter_ms:g} ms ({self.distribution})")
        if self.loss:
            parts.append(f"random loss {100 * self.loss:g}%")
        if self.burst:
            parts.append(f"burst loss {100 * self.burst.loss_rate:.3g}% (mean burst {1 / self.burst.r:g})")
        if self.duplicate:
            parts.append(f"duplicate {100 * self.duplicate:g}%")
        if self.reorder:
            parts.append(f"reorder {100 * self.reorder:g}%")
        if self.rate_bps:
            parts.append(f"bottleneck {self.rate_bps / 1e6:g} Mbit/s, {self.queue_bytes // 1000} kB queue")
        if self.keep_order:
            parts.append("in order")
        if self.transport == "tcp":
            parts.append("RTP over TCP (interleaved)")
        return ", ".join(parts) or "no impairment"


@dataclass
class ImpairmentCounters:
    offered: int = 0
    lost_random: int = 0
    lost_burst: int = 0
    lost_queue: int = 0
    duplicated: int = 0
    reordered: int = 0  # packets that skipped the delay

    @property
    def lost(self) -> int:
        return self.lost_random + self.lost_burst + self.lost_queue


@dataclass
class Impairment:
    """The seeded state of one impaired direction."""

    profile: Profile
    seed: int = 0
    counters: ImpairmentCounters = field(default_factory=ImpairmentCounters)
    _bad: bool = False
    _link_free: float = 0.0  # when the bottleneck finishes sending what it holds
    _last_release: float = 0.0

    def __post_init__(self) -> None:
        def rng(name: str) -> random.Random:
            return random.Random(f"{self.seed}/{name}")

        self._loss, self._burst, self._dup = rng("loss"), rng("burst"), rng("duplicate")
        self._reorder, self._jitter = rng("reorder"), rng("jitter")

    def process(self, now: float, size: int) -> list[float]:
        """When the packet of ``size`` bytes offered at ``now`` leaves the link (once per copy)."""
        p, c = self.profile, self.counters
        c.offered += 1
        if p.loss and self._loss.random() < p.loss:
            c.lost_random += 1
            return []
        if p.burst and self._burst_lost(p.burst):
            c.lost_burst += 1
            return []
        copies = 1
        if p.duplicate and self._dup.random() < p.duplicate:
            copies = 2
            c.duplicated += 1
        times = []
        for _ in range(copies):
            sent = self._bottleneck(now, size)
            if sent is None:
                c.lost_queue += 1
                continue
            times.append(self._delayed(sent))
        return times

    def _burst_lost(self, ge: GilbertElliott) -> bool:
        lost = self._burst.random() < (ge.loss_bad if self._bad else ge.loss_good)
        flip = ge.r if self._bad else ge.p
        if self._burst.random() < flip:
            self._bad = not self._bad
        return lost

    def _bottleneck(self, now: float, size: int) -> float | None:
        """When the last bit leaves a ``rate_bps`` link behind a FIFO; None if the FIFO is full."""
        rate = self.profile.rate_bps
        if not rate:
            return now
        backlog = max(0.0, self._link_free - now) * rate / 8
        if backlog + size > self.profile.queue_bytes:
            return None
        self._link_free = max(now, self._link_free) + size * 8 / rate
        return self._link_free

    def _delayed(self, sent: float) -> float:
        p = self.profile
        if p.reorder and self._reorder.random() < p.reorder:
            self.counters.reordered += 1
            return sent
        delay = p.delay_ms / 1000
        if p.jitter_ms:
            delay += self._jitter_sample(p.jitter_ms / 1000)
        release = sent + max(0.0, delay)
        if p.keep_order:
            release = max(release, self._last_release)
            self._last_release = release
        return release

    def _jitter_sample(self, sd: float) -> float:
        """A zero-mean deviation with standard deviation ``sd``."""
        if self.profile.distribution == "normal":
            return self._jitter.gauss(0.0, sd)
        a = PARETO_SHAPE
        scale = sd / math.sqrt(a / ((a - 1) ** 2 * (a - 2)))  # Pareto sd = scale * sqrt(...)
        mean = a * scale / (a - 1)
        return scale * self._jitter.paretovariate(a) - mean
