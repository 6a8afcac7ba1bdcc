"""Why one server's receivers see more jitter behind a bottleneck than another's: replay their
send schedules through the link model and change one property at a time.

The jitter benchmark's relay records what each server offered to the link
(``python -m benchmarks.jitter_loss --trace DIR``: kernel arrival time, size, marker, RTP
timestamp of every datagram, RTCP included). This replays those schedules through the same
:class:`~benchmarks.impair.model.Impairment` the relay uses, deterministically and in-process
(no relay timers, no loaded machine), and reports RFC 3550 A.8 jitter per kind, averaged over
the window (a receiver's report follows only the last ~16 packets):

- ``sender``: jitter of the send times themselves (what a perfect clean link would show);
- ``sender step``: the median change of send time minus RTP time from one access unit to the
  next, the server's typical timing error (robust to the odd late wake-up that A.8 remembers);
- ``received``: what the receivers measured through the real relay (its timers and a loaded
  machine add noise; traces written with the receivers' arrivals only);
- ``as sent``: behind the profile's link (default: the 2 Mbit/s bottleneck);
- ``interleaved``: the sessions' packets sent within 5 ms of each other offered alternately,
  one packet each (what the relay did before it read in kernel order; a fair-queueing link
  does the same to flows);
- ``+20 ms``: the second session sent 20 ms later (sessions out of phase);
- ``1400-byte packets``: video re-cut so that no packet exceeds 1400 bytes (gst-rtsp-server's
  MTU), sizes only;
- ``spread at 2 Mbit/s``: each video AU's packets paced at the link's rate (what
  ``--precise-pacing-rate=2000000`` does);
- ``no video``: audio alone on the link (how much audio waits behind video).

    python -m benchmarks.pacing_trace /tmp/traces            # every *.trace.json below it
    python -m benchmarks.pacing_trace /tmp/traces --profile bottleneck-2mbit --out report.md
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from benchmarks.impair import trace
from benchmarks.impair.model import Profile
from benchmarks.impair.profiles import EXTRA, PROFILES
from benchmarks.impair.trace import Sent

SAME_MOMENT = 0.005  # seconds: packets this close are "sent together" (a 1400-byte packet's time
# on a 2 Mbit/s link) for the interleaving case


def interleaved(packets: Sequence[Sent], window: float = SAME_MOMENT) -> list[Sent]:
    """Each cluster of packets sent within ``window`` of each other, re-ordered round-robin over
    sessions (first packet of each, then the second, ...) at the cluster's own times."""
    out: list[Sent] = []
    for cluster in _clusters(packets, window):
        by_session: dict[int, list[Sent]] = {}
        for p in cluster:
            by_session.setdefault(p.session, []).append(p)
        queues = list(by_session.values())
        order = [q[i] for i in range(max(map(len, queues))) for q in queues if i < len(q)]
        out += [replace(p, t=c.t) for c, p in zip(cluster, order, strict=True)]
    return out


def _video_units(packets: Sequence[Sent]) -> tuple[list[Sent], list[list[Sent]]]:
    """The packets that are not video RTP, and the video RTP packets of each access unit (by
    session and timestamp), in the order given."""
    others: list[Sent] = []
    groups: dict[tuple[int, int], list[Sent]] = {}
    for p in packets:
        if p.video and not p.rtcp:
            groups.setdefault((p.session, p.ts), []).append(p)
        else:
            others.append(p)
    return others, list(groups.values())


def recut(packets: Sequence[Sent], largest: int) -> list[Sent]:
    """Video packets of each access unit re-cut so none exceeds ``largest`` bytes (the same bytes
    of NAL data, a 12-byte RTP and 2-byte FU-A header per piece; the pieces leave when the
    originals did, extra ones with the last)."""
    out, groups = _video_units(packets)
    for group in groups:
        if all(p.size <= largest for p in group):
            out += group
            continue
        payload = sum(p.size - 14 for p in group)
        step = largest - 14
        pieces = -(-payload // step)
        sizes = [step + 14] * (pieces - 1) + [payload - step * (pieces - 1) + 14]
        times = [group[min(i, len(group) - 1)].t for i in range(pieces)]
        out += [replace(group[0], t=t, size=s) for t, s in zip(times, sizes, strict=True)]
    out.sort(key=lambda p: p.t)
    return out


def spread(packets: Sequence[Sent], rate: float, share: float = 0.5) -> list[Sent]:
    """Each video AU's packets after the first sent as if paced at ``rate`` bit/s (each once the
    one before would have crossed such a link), within ``share`` of a 25 fps frame: what
    ``--precise-pacing-rate`` does."""
    out, groups = _video_units(packets)
    for group in groups:
        after, budget = 0.0, share * 0.040
        sizes = [p.size for p in group[:-1]]
        squeeze = min(1.0, budget / (sum(sizes) * 8 / rate)) if sizes else 1.0
        out.append(group[0])
        for before, p in zip(sizes, group[1:], strict=True):
            after += before * 8 / rate * squeeze
            out.append(replace(p, t=group[0].t + after))
    out.sort(key=lambda p: p.t)
    return out


def _clusters(packets: Sequence[Sent], window: float) -> list[list[Sent]]:
    ordered = sorted(packets, key=lambda p: p.t)
    clusters: list[list[Sent]] = []
    for p in ordered:
        if clusters and p.t - clusters[-1][-1].t <= window:
            clusters[-1].append(p)
        else:
            clusters.append([p])
    return clusters


def sender_jitter_ms(packets: Sequence[Sent], video: bool) -> float:
    """A.8 jitter of the send times alone (a link that adds nothing), mean over the window."""
    per = trace.jitter_per_flow(packets, [p.t for p in packets], average=True)
    values = [j for (_, clock), j in per.items() if (clock == 90000) == video]
    return 1000 * statistics.mean(values) if values else 0.0


def sender_steps_ms(packets: Sequence[Sent], video: bool) -> float:
    """Median change of (send time - RTP time) of each access unit's first packet from one unit
    to the next: the server's typical timing error, which one late wake-up on a loaded machine
    does not move (A.8 does)."""
    firsts: dict[tuple[int, int], dict[int, Sent]] = {}
    for p in sorted(packets, key=lambda p: p.t):
        if not p.rtcp and p.video == video:
            firsts.setdefault(p.flow, {}).setdefault(p.ts, p)
    steps = [
        abs((b.t - b.ts / b.clock) - (a.t - a.ts / a.clock))
        for units in firsts.values()
        for a, b in itertools.pairwise(units.values())
    ]
    return 1000 * statistics.median(steps) if steps else 0.0


CASES: dict[str, Callable[[Sequence[Sent]], Sequence[Sent]]] = {
    "as sent": lambda p: p,
    "interleaved": interleaved,
    "+20 ms": lambda p: trace.shifted(p, 1, 0.020),
    "1400-byte packets": lambda p: recut(p, 1400),
    "spread at 2 Mbit/s": lambda p: spread(p, 2e6),
    "no video": lambda p: [x for x in p if not x.video],
}


def received_jitter_ms(
    packets: Sequence[Sent], received: dict[tuple[int, int, int], float], video: bool
) -> float:
    """A.8 jitter from the receivers' own arrival times (through the real relay), window mean."""
    got = [(p, received.get((p.session, p.clock, p.seq))) for p in packets if not p.rtcp]
    kept = [(p, at) for p, at in got if at is not None and p.video == video]
    if not kept:
        return 0.0
    per = trace.jitter_per_flow([p for p, _ in kept], [at for _, at in kept], average=True)
    return 1000 * statistics.mean(per.values())


def analyse(
    packets: Sequence[Sent], profile: Profile, received: dict[tuple[int, int, int], float] | None = None
) -> dict[str, float | int]:
    """Figures of one schedule: shape, sender jitter, and jitter behind ``profile`` per case
    (and what the receivers measured through the relay, when the trace has their arrivals)."""
    rtp = [p for p in packets if not p.rtcp]
    video = [p for p in rtp if p.video]
    audio = [p for p in rtp if not p.video]
    units: dict[tuple[int, int], list[float]] = {}
    for p in video:
        units.setdefault((p.session, p.ts), []).append(p.t)
    row: dict[str, float | int] = {
        "video packets": len(video),
        "largest": max((p.size for p in video), default=0),
        "mean size": round(statistics.mean(p.size for p in video)) if video else 0,
        "packets per AU": round(len(video) / len(units), 2) if units else 0,
        "audio packets": len(audio),
        "RTCP": len(packets) - len(rtp),
        "sender video": sender_jitter_ms(packets, True),
        "sender audio": sender_jitter_ms(packets, False),
        "sender step video": sender_steps_ms(packets, True),
        "sender step audio": sender_steps_ms(packets, False),
        "last report video": trace.mean_jitter_ms(packets, profile, video=True),
    }
    if received:
        row["received video"] = received_jitter_ms(packets, received, True)
        row["received audio"] = received_jitter_ms(packets, received, False)
    for name, case in CASES.items():
        changed = case(packets)
        if name != "no video":
            row[f"{name} video"] = trace.mean_jitter_ms(changed, profile, video=True, average=True)
        row[f"{name} audio"] = trace.mean_jitter_ms(changed, profile, video=False, average=True)
    return row


def markdown(rows: dict[str, dict[str, float | int]], profile: Profile) -> str:
    keys = list(dict.fromkeys(k for row in rows.values() for k in row))
    lines = [
        f"Send schedules replayed through `{profile.name}` ({profile.describe()}); jitter in ms "
        "(RFC 3550 A.8, mean over sessions; the estimate's mean over the window after its first "
        "second, but `last report`: its value after the last packet, what a receiver's final "
        "report carries).",
        "",
        "| schedule | " + " | ".join(keys) + " |",
        "|---|" + "---:|" * len(keys),
    ]
    for name, row in rows.items():
        cells = [_cell(row.get(k)) for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: float | int | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def main(argv: list[str] | None = None) -> int:
    every = {**PROFILES, **EXTRA}
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.pacing_trace", description=__doc__.splitlines()[0]
    )
    parser.add_argument("traces", type=Path, nargs="+", help="trace files or folders holding them")
    parser.add_argument("--profile", choices=sorted(every), default="bottleneck-2mbit")
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    files = {
        f"{root.name}/{f.relative_to(root)}".removesuffix(".trace.json") if root.is_dir() else f.stem: f
        for root in args.traces
        for f in (sorted(root.rglob("*.trace.json")) if root.is_dir() else [root])
    }
    if not files:
        raise SystemExit("no *.trace.json found")
    profile = every[args.profile]
    rows = {label: analyse(trace.load(f), profile, trace.load_received(f)) for label, f in files.items()}
    text = markdown(rows, profile)
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
