"""What a server sent into the relay, and the link model replayed over it offline (sans-I/O).

The UDP relay can record every server -> receiver datagram as the link saw it (time offered,
relay port, size, RTP header). Replaying that schedule through :class:`Impairment` gives the
times each packet would leave the link, deterministically and without a quiet machine, and
RFC 3550 A.8 jitter per stream follows from those times and the RTP timestamps. Two servers'
schedules of the same clip can so be compared under the same link, and changed one property
at a time (``benchmarks.pacing_trace``) to find which difference accounts for a gap.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks.impair.model import Impairment, Profile


@dataclass(frozen=True)
class Sent:
    """One datagram offered to the link."""

    t: float  # seconds (the relay's clock)
    session: int
    clock: int  # the stream's RTP clock rate (90000: video)
    size: int  # bytes of UDP payload
    rtcp: bool = False
    marker: bool = False
    seq: int = 0
    ts: int = 0  # RTP timestamp

    @property
    def video(self) -> bool:
        return self.clock == 90000

    @property
    def flow(self) -> tuple[int, int]:
        return self.session, self.clock


def parse(records: Iterable[tuple[float, int, int, bytes]], flows: dict[int, tuple[int, int]]) -> list[Sent]:
    """Relay records -> packets; ``flows`` maps a relay RTP port to (session, clock); port + 1 is
    its RTCP. Records of other ports are left out."""
    out = []
    for t, port, size, head in records:
        if port in flows:
            session, clock = flows[port]
            if len(head) < 12:
                continue
            b1, seq, ts = struct.unpack_from("!xBHI", head)
            out.append(Sent(t, session, clock, size, False, bool(b1 & 0x80), seq, ts))
        elif port - 1 in flows:
            session, clock = flows[port - 1]
            out.append(Sent(t, session, clock, size, rtcp=True))
    return out


def save(
    folder: Path,
    server: str,
    profile: str,
    packets: Sequence[Sent],
    received: Iterable[tuple[int, int, int, float]] = (),
) -> Path:
    """``folder/<server>-<profile>.trace.json``: one row per packet offered to the link, and one
    per packet a receiver got ((session, clock, seq, kernel arrival)), times from the first."""
    t0 = packets[0].t if packets else 0.0
    rows = [
        [round(p.t - t0, 7), p.session, p.clock, p.size, int(p.rtcp), int(p.marker), p.seq, p.ts]
        for p in packets
    ]
    got = [[session, clock, seq, round(at - t0, 7)] for session, clock, seq, at in received]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{server}-{profile}.trace.json"
    data = {"server": server, "profile": profile, "packets": rows, "received": got}
    path.write_text(json.dumps(data, separators=(",", ":")))
    return path


def load(path: Path) -> list[Sent]:
    data = json.loads(path.read_text())
    return [
        Sent(t, session, clock, size, bool(rtcp), bool(marker), seq, ts)
        for t, session, clock, size, rtcp, marker, seq, ts in data["packets"]
    ]


def load_received(path: Path) -> dict[tuple[int, int, int], float]:
    """(session, clock, seq) -> when the receiver got it (the trace's time scale)."""
    data = json.loads(path.read_text())
    return {(session, clock, seq): at for session, clock, seq, at in data.get("received", [])}


def through(packets: Sequence[Sent], profile: Profile, seed: int = 1) -> list[float | None]:
    """When each packet leaves the link (None: lost), in the order given (sorted by send time first:
    the link is one FIFO shared by every flow, RTCP included)."""
    order = sorted(range(len(packets)), key=lambda i: packets[i].t)
    link = Impairment(profile, seed)
    out: list[float | None] = [None] * len(packets)
    for i in order:
        times = link.process(packets[i].t, packets[i].size)
        out[i] = times[0] if times else None
    return out


def a8_jitter(
    arrivals: Sequence[float], stamps: Sequence[int], clock: int, *, average: bool = False
) -> float:
    """RFC 3550 A.8 interarrival jitter in seconds after the last packet, in arrival order; with
    ``average``, the estimate's mean over every packet after the first second (what a receiver
    reports follows the last ~16 packets, so a single report is a noisy figure)."""
    pairs = sorted(zip(arrivals, stamps, strict=True))
    jitter, last = 0.0, None
    total, count = 0.0, 0
    start = pairs[0][0] + 1.0 if pairs else 0.0
    for arrival, ts in pairs:
        transit = arrival * clock - ts
        if last is not None:
            d = abs(transit - last)
            jitter += (d - jitter) / 16
        last = transit
        if arrival >= start:
            total += jitter
            count += 1
    if average:
        return total / count / clock if count else 0.0
    return jitter / clock


def jitter_per_flow(
    packets: Sequence[Sent], arrivals: Sequence[float | None], *, average: bool = False
) -> dict[tuple[int, int], float]:
    """A.8 jitter (seconds) of every RTP stream from the link's leaving times."""
    flows: dict[tuple[int, int], tuple[list[float], list[int]]] = {}
    for p, at in zip(packets, arrivals, strict=True):
        if p.rtcp or at is None:
            continue
        times, stamps = flows.setdefault(p.flow, ([], []))
        times.append(at)
        stamps.append(p.ts)
    return {flow: a8_jitter(t, s, flow[1], average=average) for flow, (t, s) in flows.items()}


def mean_jitter_ms(
    packets: Sequence[Sent], profile: Profile, *, video: bool = True, seed: int = 1, average: bool = False
) -> float:
    """Mean over sessions of one kind's A.8 jitter behind ``profile``, in ms (``average``: see
    :func:`a8_jitter`)."""
    per = jitter_per_flow(packets, through(packets, profile, seed), average=average)
    values = [j for (_, clock), j in per.items() if (clock == 90000) == video]
    return 1000 * sum(values) / len(values) if values else 0.0


def shifted(packets: Sequence[Sent], session: int, seconds: float) -> list[Sent]:
    """The same schedule with one session's packets sent ``seconds`` later."""
    return [replace(p, t=p.t + seconds) if p.session == session else p for p in packets]
