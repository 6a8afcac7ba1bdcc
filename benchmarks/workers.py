"""Benchmark 5a of issue 18: sessions at saturation and CPU per stream, 1 worker and 2, one run.

Both servers are measured the same way by :mod:`benchmarks.load` (its generator processes, its
quality rule: a level breaks at loss > 0.1 % or p99 send lateness > 10 ms), UDP, one level after
another until a level breaks. The server's CPU is the whole process tree's (the parent and its
workers); the load generator's own CPU is reported too, since on a small machine it competes with
the server for the same cores. The report ends with a paper projection for a 32-core machine
from the measured cost per stream, and which limit would bind first.

    python -m benchmarks.workers --sessions 50 100 200 300 --seconds 8

Writes ``benchmarks/results/<date>/workers.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import load, report, server_process

CORES_PROJECTED = 32
CLIP_BITS_PER_SECOND = 1_000_000  # load.CLIP: about 1 Mbit/s per session


@dataclass
class TreeServer(server_process.Server):
    """A server whose CPU and memory are those of its process and every descendant (workers)."""

    rtp_port: int = 0  # the first worker's; worker i has rtp_port + 2 i
    workers: int = 1

    def _pids(self) -> list[int]:
        pids, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*"):
                children = task / "children"
                if children.exists():
                    todo += [int(c) for c in children.read_text().split()]
        return pids

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self._pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def rss_bytes(self) -> int:
        total = 0
        for pid in self._pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            found = re.search(r"VmRSS:\s+(\d+)", status)
            total += int(found.group(1)) * 1024 if found else 0
        return total


LIMITS = (  # the per-client caps are for the open Internet; the load generator is one client address
    "max_connections = 20000\nmax_connections_per_client = 20000\n"
    "max_sessions = 20000\nmax_sessions_per_client = 20000\n"
    # opening hundreds of sessions one after another on a loaded machine can take over a minute:
    # the first must not time out before the last is set up
    "session_timeout = 600\n"
)


def start(media: Path, log_path: Path, workers: int) -> TreeServer:
    port, http_port = server_process.free_port(), server_process.free_port()
    rtp = _free_udp_run(2 * workers)
    config = log_path.with_suffix(".toml")
    config.write_text(LIMITS)
    args = [
        sys.executable, "-m", "streamd.cli", "serve", "--host", "127.0.0.1", "--rtsp-port", str(port),
        "--rtp-port", str(rtp), "--no-http", "--media", str(media), "--no-test-stream",
        "--workers", str(workers), "--config", str(config),
    ]  # fmt: skip
    server = TreeServer(server_process._spawn(args, log_path), port, http_port, rtp_port=rtp, workers=workers)
    deadline = time.monotonic() + 120
    ready = "all 2 workers ready" if workers > 1 else "serving files under"
    while ready.replace("2", str(workers)) not in log_path.read_text(errors="replace"):
        if server.process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"streamd --workers {workers} did not start; see {log_path}")
        time.sleep(0.2)
    return server


def _free_udp_run(count: int) -> int:
    import socket

    for _ in range(200):
        base = server_process.free_even_udp_pair()
        try:
            held = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
            try:
                for n, sock in enumerate(held):
                    sock.bind(("127.0.0.1", base + n))
            finally:
                for sock in held:
                    sock.close()
            return base
        except OSError:
            continue
    raise RuntimeError("no free UDP ports")


def ramp(
    server: TreeServer, levels: list[int], seconds: float, generators: int, max_late_ms: float
) -> list[dict[str, Any]]:
    """Every level (a level that breaks does not end the ramp: on a shared machine one bad window
    says little), judged by ``max_late_ms`` instead of load.py's 10 ms when asked."""
    rows = []
    for n in report.progress(levels, len(levels), f"streamd --workers {server.workers} UDP"):
        try:
            row = load.run_level(server, n, False, seconds, generators)
        except AssertionError as exc:  # a generator failed while starting its sessions
            row = {"sessions": n, "error": str(exc)}
        if "error" not in row:
            row["ok"] = row["loss_percent"] <= load.MAX_LOSS_PERCENT and row["late_p99_ms"] <= max_late_ms
        rows.append(row)
        time.sleep(2)
        if row.get("loss_percent", 100.0) > 5:  # far past saturation: higher levels say nothing more
            break
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    good = [r for r in rows if r.get("ok")]
    best = max(good, key=lambda r: r["sessions"]) if good else None
    return {
        "saturation_sessions": best["sessions"] if best else 0,
        "cpu_percent_per_stream": best["cpu_percent_per_stream"] if best else None,
        "cpu_percent": best["cpu_percent"] if best else None,
        "generator_cpu_percent": best["generator_cpu_percent"] if best else None,
        "memory_per_session_kib": best["memory_per_session_kib"] if best else None,
        "broke_at": next((r["sessions"] for r in rows if not r.get("ok")), None),
    }


def projection(per_stream_percent: float, memory_kib: float) -> dict[str, Any]:
    """What 32 cores would carry if CPU per stream stayed as measured, and what binds first."""
    cpu_sessions = int(CORES_PROJECTED * 100 / per_stream_percent)
    nic = {f"{g} Gbit/s": int(g * 1e9 * 0.9 / CLIP_BITS_PER_SECOND) for g in (10, 25, 100)}
    return {
        "cores": CORES_PROJECTED,
        "cpu_bound_sessions": cpu_sessions,
        "nic_bound_sessions": nic,
        "memory_gib": cpu_sessions * memory_kib / 2**20,
        "bandwidth_gbit": cpu_sessions * CLIP_BITS_PER_SECOND / 1e9,
    }


def markdown(rep: dict[str, Any]) -> str:
    one, two = rep["summary"]["1"], rep["summary"]["2"]
    ratio = two["saturation_sessions"] / one["saturation_sessions"] if one["saturation_sessions"] else 0
    lines = [
        f"# Worker processes: 1 vs 2 ({rep['date']})",
        "",
        f"Machine: {report.machine_line(rep['machine'])}. Clip: {load.CLIP}. UDP, "
        f"{rep['seconds']:g} s per level, load generator in {rep['generators']} processes of its own "
        f"on the same cores. A level is good at loss <= {load.MAX_LOSS_PERCENT} % and p99 send lateness "
        f"<= {rep['max_late_ms']:g} ms.",
        "",
        "| workers | sessions at saturation | broke at | server CPU % | CPU % per stream | generator CPU % |"
        " memory per session KiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, s in (("1", one), ("2", two)):
        lines.append(
            f"| {key} | {s['saturation_sessions']} | {s['broke_at'] or '-'} | {load._f(s['cpu_percent'])} | "
            f"{load._f(s['cpu_percent_per_stream'], 3)} | {load._f(s['generator_cpu_percent'])} | "
            f"{load._f(s['memory_per_session_kib'])} |"
        )
    lines += ["", f"2 workers / 1 worker: {ratio:.2f}x the sessions at the same quality.", ""]
    for key in ("1", "2"):
        lines += [f"Levels with {key} worker(s):", ""]
        lines += [
            "| sessions | CPU % | CPU % / stream | loss % | p50 late ms | p99 late ms | gen. CPU % | ok |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rep["results"][key]:
            if "error" in r:
                lines.append(f"| {r['sessions']} | error: {r['error']} | | | | | | |")
                continue
            cells = [
                r["sessions"],
                load._f(r["cpu_percent"]),
                load._f(r["cpu_percent_per_stream"], 3),
                load._f(r["loss_percent"], 3),
                load._f(r["late_p50_ms"]),
                load._f(r["late_p99_ms"]),
                load._f(r["generator_cpu_percent"]),
                "yes" if r["ok"] else "no",
            ]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        lines.append("")
    if rep.get("projection"):
        p = rep["projection"]
        lines += [
            f"Projection for {p['cores']} cores at the measured CPU per stream: {p['cpu_bound_sessions']} "
            f"sessions by CPU, {p['bandwidth_gbit']:.1f} Gbit/s, {p['memory_gib']:.1f} GiB; a NIC carries "
            + ", ".join(f"{k}: {v}" for k, v in p["nic_bound_sessions"].items())
            + " sessions of this clip.",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.workers", description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[50, 100, 200, 300, 400, 500])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--generators", type=int, default=2, help="load generator processes")
    parser.add_argument(
        "--max-late-ms", type=float, default=load.MAX_P99_LATE_MS, help="p99 send lateness a level may have"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    out = args.out or report.results_dir()
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        from media.testsrc import write_synthetic_media

        media = Path(tmp)
        write_synthetic_media(
            media / "clip.mp4", seconds=args.seconds + 30, size=(640, 360), fps=25, gop=25, bframes=False
        )
        for workers in (1, 2):
            server = start(media, out / f"workers-{workers}.log", workers)
            try:
                # warm every worker up (its own unit cache, first reads, imports): not measured
                load.run_level(server, 20, False, 3, args.generators)
                time.sleep(2)
                results[str(workers)] = ramp(
                    server, args.sessions, args.seconds, args.generators, args.max_late_ms
                )
            finally:
                server.stop()
    summary = {k: summarize(v) for k, v in results.items()}
    rep: dict[str, Any] = {
        "benchmark": "workers",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": report.machine(),
        "seconds": args.seconds,
        "generators": args.generators,
        "max_late_ms": args.max_late_ms,
        "levels": args.sessions,
        "results": results,
        "summary": summary,
    }
    best = summary["2"] if summary["2"]["cpu_percent_per_stream"] else summary["1"]
    if best["cpu_percent_per_stream"]:
        rep["projection"] = projection(best["cpu_percent_per_stream"], best["memory_per_session_kib"] or 0)
    (out / "workers.json").write_text(json.dumps(rep, indent=1))
    text = markdown(rep)
    (out / "workers.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
