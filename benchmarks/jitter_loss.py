"""Jitter/loss benchmark: receivers behind a seeded impairment relay, per named profile.

For each profile (clean, 1% random loss, 5% burst loss, 30 ± 10 ms jitter, 2 Mbit/s bottleneck,
and 30 ± 10 ms in-order delay over RTSP/TCP) it plays the same clip to a few receivers through
``benchmarks.impair.UdpRelay`` (or, for the TCP profile, RTSP with interleaved RTP through
``benchmarks.impair.TcpRelay``), and compares three views of every stream:

- ground truth: the packets the relay dropped on that flow;
- the receiver: ``streamd.rtp.receiver_stats`` (RFC 3550 A.1/A.3 loss, A.8 jitter);
- the server: what it learned from the receivers' RTCP receiver reports (``GET /api/v1/sessions``).

The receivers send a report every second and a final one at the end of the window; the server's
figures must then equal that final report (loss exactly, jitter within rounding), and the RTT it
computes must match the relay's two-way delay. gst-rtsp-server runs the same profiles in the same
invocation (it has no API, so only the receivers' view is compared).

    python -m benchmarks.jitter_loss                 # all profiles, streamd and the peer
    python -m benchmarks.jitter_loss --profiles clean --seconds 5 --no-peer
    python -m benchmarks.jitter_loss --profiles clean bottleneck-2mbit \
        --variant=precise=--precise-pacing --trace /tmp/traces   # + streamd precise, schedules kept

Writes ``benchmarks/results/<date>/jitter_loss.{json,md}`` and PNG plots (with matplotlib). Over
the UDP relay each profile also reports the link model's replay of what the server offered
(``benchmarks.impair.trace``: the jitter without the relay's timer noise) and the jitter of the
send times themselves; ``benchmarks.pacing_trace`` analyses traces written with ``--trace``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks import report, server_process
from benchmarks.client import Session, Track
from benchmarks.impair import trace
from benchmarks.impair.kernel import KernelLink, available_qdiscs, qdisc_args
from benchmarks.impair.model import Impairment, Profile
from benchmarks.impair.profiles import EXTRA, PROFILES, reverse_of
from benchmarks.impair.relay import TcpRelay, UdpRelay

CLIP = "640x360 25 fps H.264 (800 kbit/s, GOP 1 s, no B-frames) + AAC 48 kHz stereo"
REPORT_INTERVAL = 1.0  # seconds between receiver reports (RFC 3550 would allow 5; more samples here)
SAMPLE_INTERVAL = 0.25
# agreement tolerances between the three views
TOL_LOSS_PACKETS = 2  # receiver vs relay: packets in flight at the snapshot, the probation packet
TOL_LOSS_FRACTION = 0.005  # ... plus this share of the packets offered
TOL_JITTER_MS = 0.002  # server vs report: the API rounds to 3 decimals
TOL_FRACTION = 1 / 256 + 1e-4  # fraction lost is an 8-bit fixed-point number
TOL_RTT_MS = 10.0  # plus 4 standard deviations of the two-way jitter


def expected_jitter_ms(profile: Profile, seed: int = 99) -> float | None:
    """The A.8 jitter the delay distribution alone should produce: E|d1 - d2| (by simulation)."""
    if not profile.jitter_ms:
        return 0.0 if not profile.rate_bps else None
    sim = Profile("sim", delay_ms=profile.delay_ms, jitter_ms=profile.jitter_ms,
                  distribution=profile.distribution, keep_order=profile.keep_order)  # fmt: skip
    link = Impairment(sim, seed)
    delays = [link.process(i * 10.0, 100)[0] - i * 10.0 for i in range(20000)]
    return 1000 * statistics.mean(abs(a - b) for a, b in itertools.pairwise(delays))


async def fetch_sessions(host: str, http_port: int) -> list[dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as client,
        client.get(f"http://{host}:{http_port}/api/v1/sessions") as response,
    ):
        return (await response.json())["sessions"]


async def run_profile(
    server: server_process.Server,
    profile: Profile,
    receivers: int,
    seconds: float,
    seed: int,
    link: KernelLink | None = None,
    trace_to: Path | None = None,
) -> dict[str, Any]:
    """One profile's window; through ``link``'s kernel qdiscs when given, else through a relay.
    ``trace_to``: write what the server sent into the relay there (``benchmarks.impair.trace``)."""
    forward, backward = Impairment(profile, seed), Impairment(reverse_of(profile), seed + 1)
    relay: UdpRelay | TcpRelay | None = None
    cpu0 = server.cpu_seconds()
    opts: dict[str, Any] = {"live": True, "playout_delay": 0.2}
    port = server.port
    qdisc = ""
    if link is not None:
        args = qdisc_args(profile, available_qdiscs())
        assert args is not None, "run_all leaves out what the kernel here cannot do"
        link.shape(args, qdisc_args(reverse_of(profile), available_qdiscs()))
        qdisc = " ".join(args)
        opts["local_host"] = link.client_host
    elif profile.transport == "tcp":  # RTSP and interleaved RTP/RTCP through the TCP relay
        relay = TcpRelay(("127.0.0.1", server.port), forward, backward)
        port = await relay.start()
        opts |= {"tcp": True, "url_port": server.port}
    else:
        relay = UdpRelay(forward, backward, trace=[])
        opts["relay"] = relay
    host = server.host if link is not None else "127.0.0.1"
    sessions = [await Session.open(host, port, server.path, **opts) for _ in range(receivers)]
    for s in sessions:
        await s.play()
    start = time.monotonic()
    history: list[list[tuple[float, float]]] = [[] for _ in sessions]
    next_report = start + REPORT_INTERVAL
    while (now := time.monotonic()) < start + seconds:
        for i, s in enumerate(sessions):
            for track in s.tracks:
                track.sample_jitter(now)
            history[i].append((now - start, s.tracks[0].jitter_history[-1][1]))
        if now >= next_report:
            for s in sessions:
                s.send_receiver_reports(now)
            next_report += REPORT_INTERVAL
        await asyncio.sleep(SAMPLE_INTERVAL)
    final_at = time.monotonic()
    finals = [s.send_receiver_reports(final_at) for s in sessions]
    measured = [[t.stats.as_dict() for t in s.tracks if t.stats is not None] for s in sessions]
    truths = [[_truth(t) for t in s.tracks] for s in sessions]
    cpu = server.cpu_seconds() - cpu0
    if link is not None:  # stop sending, so what is queued arrives and every drop is counted once
        for s in sessions:
            await s.control.request("PAUSE", s.url)
    await asyncio.sleep(0.3 + 2 * (profile.delay_ms + 4 * profile.jitter_ms) / 1000)
    kernel = None
    if link is not None:
        now = [t.stats.as_dict() for s in sessions for t in s.tracks if t.stats is not None]
        lost, expected = sum(f["lost"] for f in now), sum(f["expected"] for f in now)
        dropped = link.forward_drops()
        tol = TOL_LOSS_PACKETS * len(now) + TOL_LOSS_FRACTION * expected
        kernel = {"qdisc": qdisc, "dropped": dropped, "receivers_lost": lost, "offered": expected,
                  "agree": abs(lost - dropped) <= tol}  # fmt: skip
    api: dict[int, dict[str, Any]] = {}
    if server.http_port:
        for entry in await fetch_sessions(server.host, server.http_port):
            for track in entry["tracks"]:
                api[track["ssrc"]] = track["rtcp"]
    streams = []
    for s, final, truth, figures in zip(sessions, finals, truths, measured, strict=True):
        for track, sent, (offered, dropped, duplicated), receiver in zip(
            s.tracks, final, truth, figures, strict=True
        ):
            row: dict[str, Any] = {
                "clock": track.clock,
                "relay_offered": offered,
                "relay_dropped": dropped,
                "relay_duplicated": duplicated,
                "receiver": receiver,  # at the moment of the final report
                "report_sent": sent,
                "server": api.get(track.ssrc or -1),
                "first_packet_ms": 1000 * (track.arrivals[0] - s.play_sent) if track.arrivals else None,
            }
            row["checks"] = _checks(row, profile, per_flow_truth=link is None)
            streams.append(row)
    for s in sessions:
        await s.close()
    model = None
    if isinstance(relay, UdpRelay) and relay.trace is not None:
        flows = {
            sock.port: (i, track.clock)
            for i, s in enumerate(sessions)
            for track in s.tracks
            for sock in relay.sockets
            if sock.forward is track.relay_flow
        }
        offered = trace.parse(relay.trace, flows)
        model = _model_view(offered, profile, seed)
        if trace_to is not None:
            got = [
                (i, track.clock, seq, at)
                for i, s in enumerate(sessions)
                for track in s.tracks
                for seq, at in zip(track.seqs, track.arrivals, strict=True)
            ]
            trace.save(trace_to, server.name, profile.name, offered, got)
    if isinstance(relay, TcpRelay):
        await relay.close()
    elif relay is not None:
        relay.close()
    return _summarize(profile, streams, history, cpu / seconds, receivers, kernel) | (model or {})


def _model_view(offered: list[trace.Sent], profile: Profile, seed: int) -> dict[str, float]:
    """The jitter the receivers would see if the relay released every packet exactly on the link
    model's time (its timers and the loopback add a little noise), and the jitter of the send
    times themselves (the server's own precision, as the kernel stamped the packets)."""
    sent = trace.jitter_per_flow(offered, [p.t for p in offered])
    return {
        "model_video_jitter_ms": trace.mean_jitter_ms(offered, profile, video=True, seed=seed),
        "model_audio_jitter_ms": trace.mean_jitter_ms(offered, profile, video=False, seed=seed),
        "sent_video_jitter_ms": 1000 * statistics.mean(j for (_, c), j in sent.items() if c == 90000),
        "sent_audio_jitter_ms": 1000 * statistics.mean(j for (_, c), j in sent.items() if c != 90000),
    }


def _truth(track: Track) -> tuple[int, int, int]:
    """(offered, dropped, duplicated) on the relay; a TCP relay loses nothing, so what arrived."""
    flow = track.relay_flow
    if flow is None:
        return len(track.arrivals), 0, 0
    return flow.offered, flow.dropped, flow.duplicated


def _checks(row: dict[str, Any], profile: Profile, *, per_flow_truth: bool = True) -> dict[str, bool | None]:
    """Do the three views agree, within the stated tolerances?

    Without ``per_flow_truth`` (kernel qdiscs count drops per device) the receivers are checked
    against the qdisc in the profile's summary instead."""
    sent, server, receiver = row["report_sent"], row["server"], row["receiver"]
    truth_lost = row["relay_dropped"] - row["relay_duplicated"]
    tol = TOL_LOSS_PACKETS + TOL_LOSS_FRACTION * row["relay_offered"]
    checks: dict[str, bool | None] = {
        "receiver_vs_relay_loss": abs(receiver["lost"] - truth_lost) <= tol if per_flow_truth else None
    }
    if server is None or not sent:
        checks |= {"server_vs_report_loss": None, "server_vs_report_jitter": None, "server_rtt": None}
        return checks
    checks["server_vs_report_loss"] = (
        server["cumulative_lost"] == sent["cumulative_lost"]
        and abs(server["fraction_lost"] - sent["fraction_lost"]) <= TOL_FRACTION
    )
    checks["server_vs_report_jitter"] = abs(server["jitter_ms"] - sent["jitter_ms"]) <= TOL_JITTER_MS
    if server.get("rtt_ms") is None:
        checks["server_rtt"] = None
    else:
        expected = 2 * profile.delay_ms
        queueing = (
            1000 * profile.queue_bytes * 8 / profile.rate_bps if profile.rate_bps else 0.0
        )  # a full queue
        spread = TOL_RTT_MS + 4 * math.sqrt(2) * profile.jitter_ms + queueing
        checks["server_rtt"] = abs(server["rtt_ms"] - expected) <= spread
    return checks


def _summarize(
    profile: Profile,
    streams: list[dict[str, Any]],
    history: list[list[tuple[float, float]]],
    cpu: float,
    n: int,
    kernel: dict[str, Any] | None = None,
) -> dict[str, Any]:
    offered = sum(r["relay_offered"] for r in streams)
    expected = sum(r["receiver"]["expected"] for r in streams)
    lost = sum(r["receiver"]["lost"] for r in streams)
    served = [r["server"] for r in streams if r["server"]]
    video = [r for r in streams if r["clock"] == 90000]
    audio = [r for r in streams if r["clock"] != 90000]
    firsts = [r["first_packet_ms"] for r in streams[::2] if r["first_packet_ms"] is not None]
    all_checks = [v for r in streams for v in r["checks"].values() if v is not None]
    truth_loss = 100 * sum(r["relay_dropped"] for r in streams) / offered if offered else 0.0
    if kernel is not None:
        all_checks.append(kernel["agree"])
        truth_loss = 100 * kernel["dropped"] / kernel["offered"] if kernel["offered"] else 0.0
    return {
        "profile": profile.name,
        "description": profile.describe(),
        "impairment": f"kernel: tc qdisc {kernel['qdisc']}" if kernel else "user-space relay",
        "kernel": kernel,
        "receivers": n,
        "model_loss_percent": 100 * profile.expected_loss,
        "relay_loss_percent": truth_loss,
        "receiver_loss_percent": 100 * lost / expected if expected else 0.0,
        "server_cumulative_lost": sum(s["cumulative_lost"] for s in served) if served else None,
        "receiver_cumulative_lost": sum(r["report_sent"].get("cumulative_lost", 0) for r in streams),
        "expected_jitter_ms": expected_jitter_ms(profile),
        "video_jitter_ms": statistics.mean(r["receiver"]["jitter_ms"] for r in video) if video else None,
        "audio_jitter_ms": statistics.mean(r["receiver"]["jitter_ms"] for r in audio) if audio else None,
        "server_video_jitter_ms": _mean([r["server"]["jitter_ms"] for r in video if r["server"]]),
        "server_rtt_ms": _mean([s["rtt_ms"] for s in served if s.get("rtt_ms") is not None]),
        "late_percent": 100 * sum(r["receiver"]["late"] for r in streams) / expected if expected else 0.0,
        "reordered": sum(r["receiver"]["reordered"] for r in streams),
        "duplicates": sum(r["receiver"]["duplicates"] for r in streams),
        "first_packet_ms_p50": statistics.median(firsts) if firsts else None,
        "server_cpu_percent": 100 * cpu,
        "agree": all(all_checks) if all_checks else None,
        "checks_passed": f"{sum(all_checks)}/{len(all_checks)}",
        "jitter_history": history[0],
        "streams": streams,
    }


def _mean(values: list[float]) -> float | None:
    return statistics.mean(values) if values else None


async def run_all(
    profiles: list[Profile],
    receivers: int,
    seconds: float,
    seed: int,
    peer: bool,
    out: Path,
    *,
    kernel: bool = False,
    server_args: tuple[str, ...] = (),
    trace_to: Path | None = None,
    variants: dict[str, tuple[str, ...]] | None = None,
) -> dict[str, Any]:
    """Every profile against streamd (and the peer). ``kernel``: through tc qdiscs on a veth pair
    into a network namespace the servers run in; profiles this kernel cannot express are skipped."""
    skipped: dict[str, str] = {}
    if kernel:
        qdiscs = available_qdiscs()
        if not qdiscs:
            raise SystemExit("--impairment kernel needs root, iproute2 and network namespaces (ip netns)")
        for profile in profiles:
            if qdisc_args(profile, qdiscs) is not None:
                continue
            if profile.transport == "tcp" or profile.keep_order:
                skipped[profile.name] = "RTP over TCP needs in-order delay, which only its relay gives"
            else:
                skipped[profile.name] = f"this kernel has {', '.join(sorted(qdiscs))}; netem would be needed"
        profiles = [p for p in profiles if p.name not in skipped]
    link = KernelLink.create() if kernel else None
    where: dict[str, Any] = {"host": link.server_host, "prefix": link.prefix} if link else {}
    with contextlib.ExitStack() as cleanup, tempfile.TemporaryDirectory() as tmp:
        if link is not None:
            cleanup.callback(link.close)
        media = Path(tmp)
        from media.testsrc import write_synthetic_media

        write_synthetic_media(
            media / "clip.mp4", seconds=seconds + 5, size=(640, 360), fps=25, gop=25, bframes=False
        )
        servers: list[tuple[str, Any]] = [
            ("streamd", lambda: server_process.start(media, out / "streamd.log", *server_args, **where))
        ]
        for label, extra in (variants or {}).items():  # more streamd modes in the same run
            log = out / f"streamd-{label}.log"
            servers.append(
                (
                    f"streamd {label}",
                    lambda log=log, extra=extra: server_process.start(
                        media, log, *server_args, *extra, **where
                    ),
                )
            )
        peer_note = None
        if peer:
            peer_note = server_process.peer_available()
            if peer_note is None:
                servers.append(
                    (
                        "gst-rtsp-server",
                        lambda: server_process.start_peer(media / "clip.mp4", out / "peer.log", **where),
                    )
                )
        results: dict[str, list[dict[str, Any]]] = {}
        steps = report.progress(
            [(name, start, p) for name, start in servers for p in profiles],
            len(servers) * len(profiles),
            "jitter/loss profiles",
        )
        running: dict[str, server_process.Server] = {}
        try:
            for name, start, profile in steps:
                if name not in running:
                    for other in running.values():
                        other.stop()
                    running = {name: start()}
                traced = trace_to / name.replace(" ", "-") if trace_to is not None else None
                results.setdefault(name, []).append(
                    await run_profile(running[name], profile, receivers, seconds, seed, link, traced)
                )
        finally:
            for server in running.values():
                server.stop()
    return {
        "benchmark": "jitter_loss",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": report.machine(),
        "impairment": (
            f"kernel qdiscs on a veth pair into a network namespace ({', '.join(sorted(available_qdiscs()))})"
            if kernel
            else report.relay_status()
        ),
        "skipped": skipped,
        "namespace": link.name if link else None,  # removed by now
        "clip": CLIP,
        "seconds": seconds,
        "receivers": receivers,
        "seed": seed,
        "peer": peer_note or ("gst-rtsp-server" if peer else "not run"),
        "tolerances": {
            "receiver_vs_relay_loss_packets": f"{TOL_LOSS_PACKETS} + {TOL_LOSS_FRACTION:.1%} of offered",
            "server_vs_report_cumulative_lost": "exact",
            "server_vs_report_fraction_lost": "1/256",
            "server_vs_report_jitter_ms": TOL_JITTER_MS,
            "server_rtt_ms": f"2 x delay ± ({TOL_RTT_MS} + 4·√2·jitter sd + a full bottleneck queue)",
        },
        "variants": {label: list(extra) for label, extra in (variants or {}).items()},
        "results": results,
    }


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(rep: dict[str, Any], plots: list[str]) -> str:
    lines = [
        f"# Jitter and loss under impairment ({rep['date']})",
        "",
        f"Machine: {report.machine_line(rep['machine'])}.",
        f"Impairment: {rep['impairment']}. Seed {rep['seed']}.",
        *[f"Skipped: {name}: {why}." for name, why in rep.get("skipped", {}).items()],
        f"Clip: {rep['clip']}; {rep['receivers']} receivers per profile, {rep['seconds']:g} s each, "
        f"receiver reports every {REPORT_INTERVAL:g} s.",
        "",
        "Loss: model = the profile's long-run rate; relay = packets the relay dropped (ground truth); "
        "receiver = RFC 3550 A.3 from sequence numbers; server = the cumulative loss streamd holds from "
        "the receivers' last RTCP reports (must equal what they sent). Jitter: RFC 3550 A.8, video "
        "track (90 kHz), mean over receivers; expected = E|d1 - d2| of the profile's delay distribution.",
        "",
    ]
    for name, rows in rep["results"].items():
        lines += [
            f"## {name}",
            "",
            "| profile | model loss % | relay loss % | receiver loss % | lost (receivers / server) "
            "| expected jitter ms | video jitter ms | server jitter ms | audio jitter ms "
            "| link model video / audio ms | as sent video / audio ms | RTT ms "
            "| PLAY→1st pkt ms | agree |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in rows:
            server_lost = "–" if r["server_cumulative_lost"] is None else str(r["server_cumulative_lost"])
            agree = "–" if r["agree"] is None else ("✅ " if r["agree"] else "❌ ") + r["checks_passed"]
            lines.append(
                f"| {r['profile']} | {r['model_loss_percent']:.2f} | {r['relay_loss_percent']:.2f} "
                f"| {r['receiver_loss_percent']:.2f} | {r['receiver_cumulative_lost']} / {server_lost} "
                f"| {_fmt(r['expected_jitter_ms'])} | {_fmt(r['video_jitter_ms'])} "
                f"| {_fmt(r['server_video_jitter_ms'])} | {_fmt(r['audio_jitter_ms'])} "
                f"| {_fmt(r.get('model_video_jitter_ms'))} / {_fmt(r.get('model_audio_jitter_ms'))} "
                f"| {_fmt(r.get('sent_video_jitter_ms'))} / {_fmt(r.get('sent_audio_jitter_ms'))} "
                f"| {_fmt(r['server_rtt_ms'], 1)} | {_fmt(r['first_packet_ms_p50'], 1)} | {agree} |"
            )
        lines.append("")
    peer_rows = rep["results"].get("gst-rtsp-server")
    for name, rows in rep["results"].items():
        if name == "gst-rtsp-server" or peer_rows is None:
            continue
        lines += [
            f"## {name} / gst-rtsp-server",
            "",
            "| profile | receiver loss % (streamd / peer) | video jitter ratio | audio jitter ratio "
            "| link model video / audio ratio | PLAY→1st pkt ratio | server CPU ratio |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for ours, theirs in zip(rows, peer_rows, strict=False):
            lines.append(
                f"| {ours['profile']} | {ours['receiver_loss_percent']:.2f} "
                f"/ {theirs['receiver_loss_percent']:.2f} "
                f"| {report.ratio(ours['video_jitter_ms'], theirs['video_jitter_ms'])} "
                f"| {report.ratio(ours['audio_jitter_ms'], theirs['audio_jitter_ms'])} "
                f"| {report.ratio(ours.get('model_video_jitter_ms'), theirs.get('model_video_jitter_ms'))} "
                f"/ {report.ratio(ours.get('model_audio_jitter_ms'), theirs.get('model_audio_jitter_ms'))} "
                f"| {report.ratio(ours['first_packet_ms_p50'], theirs['first_packet_ms_p50'])} "
                f"| {report.ratio(ours['server_cpu_percent'], theirs['server_cpu_percent'])} |"
            )
        lines.append("")
    lines += [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def plot(rep: dict[str, Any], out: Path) -> list[str]:
    """PNG plots, if matplotlib is installed (the ``bench`` extra); returns their file names."""
    plt = report.pyplot()
    if plt is None:
        return []
    names = []
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for name, rows in rep["results"].items():
        style = "-" if name == "streamd" else "--"
        for r in rows:
            t, j = zip(*r["jitter_history"], strict=True) if r["jitter_history"] else ((), ())
            ax.plot(t, j, style, label=f"{name}: {r['profile']}")
    ax.set(xlabel="seconds since PLAY", ylabel="interarrival jitter, ms (RFC 3550 A.8, video)",
           title="Jitter over time, one receiver per profile")  # fmt: skip
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "jitter_over_time.png", dpi=110)
    names.append("jitter_over_time.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4.5))
    rows = rep["results"].get("streamd", [])
    labels = [r["profile"] for r in rows]
    series = [("model", "model_loss_percent"), ("relay (truth)", "relay_loss_percent"),
              ("receiver", "receiver_loss_percent")]  # fmt: skip
    peer_rows = rep["results"].get("gst-rtsp-server", [])
    width = 0.8 / (len(series) + (1 if peer_rows else 0))
    for k, (label, key) in enumerate(series):
        ax.bar(
            [i + k * width for i in range(len(rows))], [r[key] for r in rows], width, label=f"streamd {label}"
        )
    if peer_rows:
        xs = [i + len(series) * width for i in range(len(peer_rows))]
        ys = [r["receiver_loss_percent"] for r in peer_rows]
        ax.bar(xs, ys, width, label="gst-rtsp-server receiver")
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(rows))], labels)
    ax.set(ylabel="loss %", title="Loss per profile")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "loss_per_profile.png", dpi=110)
    names.append("loss_per_profile.png")
    plt.close(fig)

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.5))
    points = [s for r in rows for s in r["streams"] if s["server"] and s["report_sent"]]
    for axis, key, unit in ((left, "cumulative_lost", "packets"), (right, "jitter_ms", "ms")):
        xs = [s["report_sent"][key] for s in points]
        ys = [s["server"][key] for s in points]
        axis.scatter(xs, ys, s=18)
        top = max([*xs, *ys, 1])
        axis.plot([0, top], [0, top], "k:", linewidth=1)
        axis.set(xlabel=f"receiver measured ({unit})", ylabel=f"server via RTCP ({unit})", title=key)
    fig.suptitle("What receivers measured vs what streamd reports (GET /api/v1/sessions)")
    fig.tight_layout()
    fig.savefig(out / "measured_vs_rtcp.png", dpi=110)
    names.append("measured_vs_rtcp.png")
    plt.close(fig)
    return names


def _variant(spec: str) -> tuple[str, tuple[str, ...]]:
    label, _, extra = spec.partition("=")
    if not label or not extra:
        raise SystemExit(f"--variant wants LABEL=ARGS, got {spec!r}")
    return label, tuple(extra.split(","))


def main(argv: list[str] | None = None) -> int:
    every = {**PROFILES, **EXTRA}
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.jitter_loss", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--profiles", nargs="+", choices=sorted(every), default=list(PROFILES))
    parser.add_argument("--seconds", type=float, default=10, help="window per profile")
    parser.add_argument("--receivers", type=int, default=2, help="sessions per profile")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-peer", dest="peer", action="store_false", help="skip gst-rtsp-server")
    parser.add_argument(
        "--impairment",
        choices=("relay", "kernel"),
        default="relay",
        help="relay: the seeded user-space relay (per-flow ground truth); kernel: tc netem/tbf in a "
        "network namespace (root; profiles this kernel cannot express are skipped)",
    )
    parser.add_argument("--out", type=Path, help="folder for the results (default benchmarks/results/<date>)")
    parser.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNG plots")
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="an option for streamd serve, e.g. --server-arg=--precise-pacing (repeatable)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="LABEL=ARGS",
        help="another streamd mode in the same run, e.g. --variant=precise=--precise-pacing "
        "(ARGS split on commas; repeatable)",
    )
    parser.add_argument(
        "--trace",
        type=Path,
        help="folder: write each server's send schedule per UDP profile there (benchmarks.pacing_trace)",
    )
    args = parser.parse_args(argv)
    out = args.out or report.results_dir()
    out.mkdir(parents=True, exist_ok=True)
    profiles = [every[name] for name in args.profiles]
    rep = asyncio.run(
        run_all(
            profiles,
            args.receivers,
            args.seconds,
            args.seed,
            args.peer,
            out,
            kernel=args.impairment == "kernel",
            server_args=tuple(args.server_arg),
            trace_to=args.trace,
            variants=dict(_variant(v) for v in args.variant),
        )
    )
    plots = plot(rep, out) if args.plots else []
    (out / "jitter_loss.json").write_text(json.dumps(rep, indent=1))
    text = markdown(rep, plots)
    (out / "jitter_loss.md").write_text(text)
    print(text)
    streamd_rows = [r for name, rows in rep["results"].items() if name.startswith("streamd") for r in rows]
    return 0 if all(r["agree"] is not False for r in streamd_rows) else 1


if __name__ == "__main__":
    sys.exit(main())
