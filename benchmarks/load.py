"""Load benchmark: ramp concurrent sessions over UDP and TCP until quality breaks, against a peer too.

Per level it reports what a capacity plan needs: server CPU per stream, loss, send lateness
(arrival time against the RTP timestamp, relative to the stream's earliest packet in the window;
the clip has no B-frames, so RTP time order is send order), time from PLAY to the first packet,
memory per session (server RSS growth / sessions), and the load generator's own CPU. A level
"breaks" at loss > 0.1% or p99 lateness > 10 ms; the ramp stops after the first level that breaks.

The load generator runs in its own processes (``--workers``, uvloop), never in the server's, and
reports its CPU so it is never the hidden bottleneck. Over UDP, arrival times are the kernel's
receive timestamps (``SO_TIMESTAMPNS``), so the generator's own scheduling delays do not count as
server lateness; over TCP they are taken when the generator reads, an upper bound on the server's.

    python -m benchmarks.load                                  # streamd and gst-rtsp-server, UDP and TCP
    python -m benchmarks.load --sessions 10 50 --seconds 5 --transports udp --no-peer

Writes ``benchmarks/results/<date>/load.{json,md}`` and ``load.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import multiprocessing as mp
import os
import resource
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from benchmarks import report, server_process
from benchmarks.client import Session
from streamd.rtp.receiver_stats import ReceiverStats

CLIP = "640x360 25 fps H.264 (800 kbit/s, GOP 1 s, no B-frames) + AAC 48 kHz stereo, about 1 Mbit/s"
MAX_LOSS_PERCENT = 0.1
MAX_P99_LATE_MS = 10.0
GENERATOR_NICE = 10  # UDP generator processes run at this niceness


# --- the generator process --------------------------------------------------------------------


def _worker(
    conn: Connection, port: int, path: str, sessions: int, tcp: bool, seconds: float, tls: bool = False
) -> None:
    """Open ``sessions`` sessions, wait for the go, PLAY them one after another, measure, report."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if not tcp:
        # UDP arrivals carry kernel timestamps, so the generator's own delays do not show in
        # the figures: let the server have the CPU first when both want it (same for the peer)
        with contextlib.suppress(OSError):
            os.nice(GENERATOR_NICE)
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        result = asyncio.run(_generate(conn, port, path, sessions, tcp, seconds, tls))
    except Exception as exc:
        result = {"error": f"{exc.__class__.__name__}: {exc}"}
    conn.send(result)


async def _generate(
    conn: Connection, port: int, path: str, n: int, tcp: bool, seconds: float, tls: bool = False
) -> dict[str, Any]:
    context = None
    if tls:  # the benchmark's own self-signed certificate
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    opened = [await Session.open("127.0.0.1", port, path, tcp=tcp, tls=context) for _ in range(n)]
    conn.send("ready")
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, conn.recv)  # go
    for s in opened:
        await s.play()
    conn.send("playing")
    cpu0, start = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    end = time.monotonic()
    cpu = time.process_time() - cpu0
    result = _measure(opened, start, end)
    result["generator_cpu_seconds"] = cpu
    result["window"] = end - start
    # TEARDOWN: a UDP session outlives its RTSP connection (RFC 2326), and one left playing would
    # load the next level and send into ports the OS hands to the next level's receivers
    await asyncio.gather(*(s.close(teardown=True) for s in opened))
    return result


def _measure(sessions: list[Session], start: float, end: float) -> dict[str, Any]:
    late_hist: Counter[int] = Counter()  # lateness in 0.1 ms bins, to keep the pipe small
    expected = lost = packets = foreign = 0
    firsts = []
    for s in sessions:
        if (first := s.first_packet_delay()) is not None:
            firsts.append(1000 * first)
        for track in s.tracks:
            foreign += track.foreign
            stats = ReceiverStats(track.clock)
            offsets = []
            for arrival, seq, ts in zip(track.arrivals, track.seqs, track.stamps, strict=True):
                stats.receive(seq, ts, arrival)
                if start <= arrival <= end:
                    offsets.append(arrival - ts / track.clock)  # unwrapped below
            expected += stats.expected
            lost += max(0, stats.lost)
            packets += len(offsets)
            if offsets:
                offsets = _unwrap(offsets, track.clock)
                base = min(offsets)
                late_hist.update(int(10_000 * (o - base)) for o in offsets)
    return {"expected": expected, "lost": lost, "packets": packets, "late_hist": dict(late_hist),
            "first_packet_ms": firsts, "streams": sum(len(s.tracks) for s in sessions),
            "foreign": foreign}  # fmt: skip


def _unwrap(offsets: list[float], clock: int) -> list[float]:
    """Undo RTP timestamp wrap (2^32 ticks) in arrival - ts/clock offsets."""
    span = 2**32 / clock
    out, shift = [offsets[0]], 0.0
    for prev, cur in itertools.pairwise(offsets):
        if cur - prev > span / 2:
            shift -= span
        elif prev - cur > span / 2:
            shift += span
        out.append(cur + shift)
    return out


# --- the driver -------------------------------------------------------------------------------


def _percentile(hist: Counter[int], q: float) -> float:
    total = sum(hist.values())
    if not total:
        return 0.0
    rank, seen = q * (total - 1), 0
    for value in sorted(hist):
        seen += hist[value]
        if seen > rank:
            return value / 10
    return max(hist) / 10


def run_level(
    server: server_process.Server, sessions: int, tcp: bool, seconds: float, workers: int, tls: bool = False
) -> dict:
    ctx = mp.get_context("spawn")
    rss0 = server.rss_bytes()
    shares = [sessions // workers + (1 if i < sessions % workers else 0) for i in range(workers)]
    procs, pipes = [], []
    for share in shares:
        if not share:
            continue
        parent, child = ctx.Pipe()
        port = server.tls_port if tls else server.port
        proc = ctx.Process(target=_worker, args=(child, port, server.path, share, tcp, seconds, tls))
        proc.start()
        procs.append(proc)
        pipes.append(parent)
    results: list[dict[str, Any]] = []
    for pipe in pipes:
        message = pipe.recv()
        if message != "ready":
            results.append(message)
    if results:
        return {"sessions": sessions, "error": results[0].get("error")}
    rss_setup = server.rss_bytes()
    for pipe in pipes:
        pipe.send("go")
    for pipe in pipes:
        message = pipe.recv()
        assert message == "playing", message
    cpu0, wall0 = server.cpu_seconds(), time.monotonic()
    time.sleep(seconds / 2)
    rss_playing = server.rss_bytes()
    results = [pipe.recv() for pipe in pipes]
    cpu, wall = server.cpu_seconds() - cpu0, time.monotonic() - wall0
    for proc in procs:
        proc.join(30)
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        return {"sessions": sessions, "error": errors[0]}
    hist: Counter[int] = Counter()
    for r in results:
        hist.update({int(k): v for k, v in r["late_hist"].items()})
    expected = sum(r["expected"] for r in results)
    firsts = sorted(f for r in results for f in r["first_packet_ms"])
    gen_cpu = sum(r["generator_cpu_seconds"] for r in results)
    window = max(r["window"] for r in results)
    row = {
        "sessions": sessions,
        "cpu_percent": 100 * cpu / wall,
        "cpu_percent_per_stream": 100 * cpu / wall / sessions,
        "loss_percent": 100 * sum(r["lost"] for r in results) / expected if expected else 100.0,
        "packets": sum(r["packets"] for r in results),
        # CPU per packet delivered: comparable even when a starved server sent less than due
        "cpu_us_per_packet": 1e6 * cpu / max(1, sum(r["packets"] for r in results)) * window / wall,
        "late_p50_ms": _percentile(hist, 0.5),
        "late_p99_ms": _percentile(hist, 0.99),
        "late_max_ms": max(hist) / 10 if hist else 0.0,
        "first_packet_p50_ms": statistics.median(firsts) if firsts else None,
        "first_packet_p99_ms": firsts[int(0.99 * (len(firsts) - 1))] if firsts else None,
        "memory_per_session_kib": (max(rss_setup, rss_playing) - rss0) / sessions / 1024,
        "server_rss_mib": rss_playing / 2**20,
        "generator_cpu_percent": 100 * gen_cpu / window,
        "foreign_packets": sum(r.get("foreign", 0) for r in results),
    }
    row["ok"] = row["loss_percent"] <= MAX_LOSS_PERCENT and row["late_p99_ms"] <= MAX_P99_LATE_MS
    return row


def profile_server(
    server: server_process.Server, sessions: int, seconds: float, workers: int, out: Path
) -> dict:
    """py-spy's view of the server under ``sessions`` UDP sessions: where its one core goes."""
    raw = out / f"profile-{server.name}-{sessions}.txt"
    ctx = mp.get_context("spawn")
    spy = [sys.executable, "-m", "py_spy"]
    exe = Path(sys.executable).with_name("py-spy")
    if exe.exists():
        spy = [str(exe)]
    procs = []
    try:
        # the level runs in a thread-free way: start it, then sample while it plays
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=_worker, args=(child, server.port, server.path, sessions, False, seconds + 4)
        )
        proc.start()
        procs.append(proc)
        assert parent.recv() == "ready"
        parent.send("go")
        assert parent.recv() == "playing"
        done = subprocess.run(
            [*spy, "record", "-p", str(server.process.pid), "-d", str(int(seconds)), "-r", "100",
             "-f", "raw", "-o", str(raw), "--nonblocking"],
            capture_output=True, text=True, timeout=seconds + 60,
        )  # fmt: skip
        parent.recv()
        if done.returncode:
            return {"error": (done.stderr or done.stdout).strip()[-300:]}
    except (OSError, subprocess.TimeoutExpired, AssertionError) as exc:
        return {"error": str(exc)}
    finally:
        for proc in procs:
            proc.join(30)
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        n = int(count)
        total += n
        own[_frame(frames[-1])] += n
        for name in {_frame(f) for f in frames}:
            inclusive[name] += n
    return {
        "sessions": sessions,
        "samples": total,
        "raw": raw.name,
        "self_top": [(name, round(100 * n / total, 1)) for name, n in own.most_common(15)] if total else [],
        "inclusive_top": [(name, round(100 * n / total, 1)) for name, n in inclusive.most_common(25)]
        if total
        else [],
    }


def _frame(frame: str) -> str:
    """``func (path/to/module.py:123)`` -> ``func (module.py)``."""
    name, _, where = frame.partition(" (")
    return f"{name} ({Path(where.split(':')[0]).name})" if where else name


def ramp(
    server: server_process.Server,
    levels: list[int],
    tcp: bool,
    seconds: float,
    workers: int,
    tls: bool = False,
    every_level: bool = False,
) -> list[dict]:
    rows = []
    label = f"{server.name} {'RTSPS' if tls else 'TCP' if tcp else 'UDP'}"
    for n in report.progress(levels, len(levels), label):
        row = run_level(server, n, tcp, seconds, workers, tls)
        rows.append(row)
        time.sleep(2)  # let the server end the sessions (generators closed their sockets)
        if not row.get("ok", False) and not every_level:
            break
    return rows


def run_all(levels: list[int], seconds: float, transports: list[str], peer: bool, workers: int,
            profile: int | None, out: Path, server_args: tuple[str, ...] = (),
            every_level: bool = False) -> dict[str, Any]:  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        media = Path(tmp)
        from media.testsrc import write_synthetic_media

        # every session plays from the start for the whole window, plus the PLAY ramp
        write_synthetic_media(
            media / "clip.mp4", seconds=seconds + 30, size=(640, 360), fps=25, gop=25, bframes=False
        )
        # RTSPS (TCP interleaved inside TLS) needs a certificate: a self-signed one made here
        tls = _certificate(media) if "rtsps" in transports else None
        # every generated session comes from 127.0.0.1: one client address, far above the
        # per-client caps that protect a real server (100 connections, 200 sessions)
        limits = media / "limits.toml"
        most = 2 * max(levels) + 100
        limits.write_text(f"max_connections_per_client = {most}\nmax_sessions_per_client = {most}\n")
        server_args = ("--config", str(limits), *server_args)
        starts = [
            (
                "streamd",
                lambda _transport: server_process.start(
                    media, out / "load-streamd.log", "--no-http", *server_args, tls=tls
                ),
            )
        ]
        peer_note = server_process.peer_available() if peer else "not run"
        if peer and peer_note is None:
            starts.append(
                (
                    "gst-rtsp-server",  # its RTSPS port speaks only TLS: started per transport
                    lambda transport: server_process.start_peer(
                        media / "clip.mp4", out / "peer.log", tls=tls if transport == "rtsps" else None
                    ),
                )
            )
        results: dict[str, dict[str, list[dict]]] = {}
        profiles = {}
        for name, start in starts:
            for transport in transports:
                server = start(transport)  # a fresh server per ramp: nothing left over from the last
                try:
                    results.setdefault(name, {})[transport] = ramp(
                        server,
                        levels,
                        transport != "udp",
                        seconds,
                        workers,
                        transport == "rtsps",
                        every_level,
                    )
                    if profile and name == "streamd" and transport == "udp":
                        profiles[name] = profile_server(server, profile, seconds, workers, out)
                finally:
                    server.stop()
    return {
        "benchmark": "load",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": report.machine(),
        "clip": CLIP,
        "seconds": seconds,
        "workers": workers,
        "levels": levels,
        "breaks_at": {"loss_percent": MAX_LOSS_PERCENT, "late_p99_ms": MAX_P99_LATE_MS},
        "peer": peer_note or "gst-rtsp-server",
        "results": results,
        "profiles": profiles,
    }


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed P-256 certificate and key for 127.0.0.1, made with openssl."""
    cert, key = folder / "bench.crt", folder / "bench.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


# --- the report -------------------------------------------------------------------------------


def _f(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(rep: dict[str, Any], plots: list[str]) -> str:
    lines = [
        f"# Load: concurrent sessions until quality breaks ({rep['date']})",
        "",
        f"Machine: {report.machine_line(rep['machine'])}. Server and load generator share the cores.",
        f"Clip: {rep['clip']}. Each level measured over {rep['seconds']:g} s after every session's PLAY "
        f"(PLAYs are sent one after another per generator process; {rep['workers']} generator processes). "
        f"A level breaks at loss > {MAX_LOSS_PERCENT}% or p99 lateness > {MAX_P99_LATE_MS:g} ms; "
        "the ramp stops there.",
        "",
        "| server | transport | sessions | server CPU % | CPU % / stream | loss % | late p50 ms "
        "| late p99 ms "
        "| late max ms | PLAY→1st pkt p50 ms | p99 ms | memory / session KiB | generator CPU % | ok |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, by_transport in rep["results"].items():
        for transport, rows in by_transport.items():
            for r in rows:
                if "error" in r:
                    lines.append(f"| {name} | {transport.upper()} | {r['sessions']} | error: {r['error']} |")
                    continue
                lines.append(
                    f"| {name} | {transport.upper()} | {r['sessions']} | {r['cpu_percent']:.1f} "
                    f"| {r['cpu_percent_per_stream']:.2f} | {r['loss_percent']:.3f} | {r['late_p50_ms']:.1f} "
                    f"| {r['late_p99_ms']:.1f} | {r['late_max_ms']:.1f} | {_f(r['first_packet_p50_ms'])} "
                    f"| {_f(r['first_packet_p99_ms'])} | {r['memory_per_session_kib']:.0f} "
                    f"| {r['generator_cpu_percent']:.0f} | {'✅' if r['ok'] else '❌'} |"
                )
    ours, theirs = rep["results"].get("streamd", {}), rep["results"].get("gst-rtsp-server", {})
    if ours and theirs:
        lines += [
            "",
            "## streamd / gst-rtsp-server at the same level",
            "",
            "| transport | sessions | CPU per stream | loss % (streamd / peer) | late p99 "
            "| PLAY→1st pkt p50 |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for transport in ours:
            peer_rows = {r["sessions"]: r for r in theirs.get(transport, []) if "error" not in r}
            for r in ours[transport]:
                p = peer_rows.get(r["sessions"])
                if p is None or "error" in r:
                    continue
                lines.append(
                    f"| {transport.upper()} | {r['sessions']} "
                    f"| {report.ratio(r['cpu_percent_per_stream'], p['cpu_percent_per_stream'])} "
                    f"| {r['loss_percent']:.3f} / {p['loss_percent']:.3f} "
                    f"| {report.ratio(r['late_p99_ms'], p['late_p99_ms'])} "
                    f"| {report.ratio(r['first_packet_p50_ms'], p['first_packet_p50_ms'])} |"
                )
    ours = rep["results"].get("streamd", {})
    if "rtsps" in ours and "tcp" in ours:  # what TLS costs: RTSPS against plain TCP, same run
        plain = {r["sessions"]: r for r in ours["tcp"] if "error" not in r}
        lines += ["", "RTSPS / plain TCP interleaved, streamd, same run:", ""]
        lines += [
            "| sessions | CPU % / stream (RTSPS / TCP) | ratio | CPU µs / packet (RTSPS / TCP) | ratio |",
            "|---:|---:|---:|---:|---:|",
        ]
        for r in ours["rtsps"]:
            p = plain.get(r["sessions"])
            if p is not None and "error" not in r:
                ours_cpu, plain_cpu = r["cpu_percent_per_stream"], p["cpu_percent_per_stream"]
                ours_pkt, plain_pkt = r.get("cpu_us_per_packet", 0.0), p.get("cpu_us_per_packet", 0.0)
                lines.append(
                    f"| {r['sessions']} | {ours_cpu:.3f} / {plain_cpu:.3f} "
                    f"| {report.ratio(ours_cpu, plain_cpu)} "
                    f"| {ours_pkt:.1f} / {plain_pkt:.1f} | {report.ratio(ours_pkt, plain_pkt)} |"
                )
    for name, prof in rep.get("profiles", {}).items():
        lines += ["", f"## Where {name}'s CPU goes at {prof.get('sessions')} UDP sessions (py-spy)", ""]
        if "error" in prof:
            lines.append(f"py-spy failed: {prof['error']}")
            continue
        lines += ["| function (own samples) | % |", "|---|---:|"]
        lines += [f"| `{fn}` | {pct} |" for fn, pct in prof["self_top"]]
        lines += ["", "| function (inclusive) | % |", "|---|---:|"]
        lines += [f"| `{fn}` | {pct} |" for fn, pct in prof["inclusive_top"]]
    lines += ["", *[f"![{p}]({p})" for p in plots]]
    return "\n".join(lines) + "\n"


def plot(rep: dict[str, Any], out: Path) -> list[str]:
    plt = report.pyplot()
    if plt is None:
        return []
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for name, by_transport in rep["results"].items():
        for transport, rows in by_transport.items():
            rows = [r for r in rows if "error" not in r]
            xs = [r["sessions"] for r in rows]
            label = f"{name} {transport.upper()}"
            axes[0].plot(xs, [r["cpu_percent_per_stream"] for r in rows], "o-", label=label)
            axes[1].plot(xs, [r["late_p99_ms"] for r in rows], "o-", label=label)
            axes[2].plot(xs, [r["first_packet_p50_ms"] or 0 for r in rows], "o-", label=label)
    axes[0].set(xlabel="sessions", ylabel="% of a core", title="server CPU per stream")
    axes[1].set(xlabel="sessions", ylabel="ms", title="p99 send lateness", yscale="log")
    axes[1].axhline(MAX_P99_LATE_MS, color="k", linestyle=":", linewidth=1)
    axes[2].set(xlabel="sessions", ylabel="ms", title="PLAY → first packet, p50")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "load.png", dpi=110)
    plt.close(fig)
    return ["load.png"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sessions", type=int, nargs="+", default=[50, 100, 200, 300, 400], help="ramp levels"
    )
    parser.add_argument("--seconds", type=float, default=12, help="measurement window per level")
    parser.add_argument(
        "--transports",
        nargs="+",
        choices=["udp", "tcp", "rtsps"],
        default=["udp", "tcp"],
        help="rtsps: TCP interleaved inside TLS",
    )
    parser.add_argument("--workers", type=int, default=2, help="load generator processes")
    parser.add_argument("--no-peer", dest="peer", action="store_false", help="skip gst-rtsp-server")
    parser.add_argument(
        "--profile", type=int, default=400, help="py-spy streamd at this many UDP sessions (0: no)"
    )
    parser.add_argument("--out", type=Path, help="folder for the results (default benchmarks/results/<date>)")
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="an option for streamd serve, e.g. --server-arg=--precise-pacing (repeatable)",
    )
    parser.add_argument(
        "--every-level",
        action="store_true",
        help="measure every level even after one breaks (cost comparisons on a busy machine)",
    )
    args = parser.parse_args(argv)
    out = args.out or report.results_dir()
    out.mkdir(parents=True, exist_ok=True)
    rep = run_all(
        args.sessions,
        args.seconds,
        args.transports,
        args.peer,
        args.workers,
        args.profile,
        out,
        tuple(args.server_arg),
        args.every_level,
    )
    plots = plot(rep, out)
    (out / "load.json").write_text(json.dumps(rep, indent=1))
    text = markdown(rep, plots)
    (out / "load.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
