"""Fan-out: N WebRTC (WHEP) viewers of one ~1 Mbit/s live path, next to N RTSP UDP readers of it.

The path is published by ffmpeg (H.264 + Opus, copied in a loop). Viewers are aiortc peers in
separate generator processes that count RTP packets (sequence gaps = loss) without decoding;
RTSP readers are ``benchmarks.client`` sessions over UDP. The server's CPU over a window, minus
its CPU with no reader, divided by the readers, gives CPU per viewer for each protocol.

    python -m benchmarks.webrtc_fanout --viewers 200 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import resource
import subprocess
import tempfile
import time
from collections.abc import Coroutine
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from benchmarks import report, server_process
from benchmarks.client import Session

GENERATOR_NICE = 10  # the server gets the CPU first when both want it
PATH = "live/fanout"


def make_clip(out: Path) -> Path:
    """10 s of 640x360 H.264 (no B-frames, ~0.9 Mbit/s) + Opus, the path's source."""
    clip = out / "fanout.mkv"
    if not clip.exists():
        subprocess.run(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=d=10:s=640x360:r=25",
             "-f", "lavfi", "-i", "sine=f=440:d=10:r=48000", "-c:v", "libx264", "-profile:v", "baseline",
             "-b:v", "900k", "-maxrate", "1M", "-bufsize", "500k", "-g", "50",
             "-c:a", "libopus", "-b:a", "64k", "-y", str(clip)],
            check=True, timeout=300,
        )  # fmt: skip
    return clip


# --- generators (separate processes) ---------------------------------------------------------------


def _generator(conn: Connection, work: Coroutine[Any, Any, dict[str, Any]]) -> None:
    """A generator process: many sockets, a lower priority than the server, its result (or
    what went wrong) sent back over ``conn``."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with contextlib.suppress(OSError):
        os.nice(GENERATOR_NICE)
    try:
        result = asyncio.run(work)
    except Exception as exc:
        result = {"error": f"{exc.__class__.__name__}: {exc}"}
    conn.send(result)


def _whep_worker(conn: Connection, url: str, viewers: int, seconds: float) -> None:
    _generator(conn, _whep_viewers(conn, url, viewers, seconds))


async def _whep_viewers(conn: Connection, url: str, n: int, seconds: float) -> dict[str, Any]:
    import aiohttp
    from aiortc import RTCPeerConnection, RTCSessionDescription

    counters: list[dict[str, Any]] = []
    peers = []
    async with aiohttp.ClientSession() as http:
        for _ in range(n):
            pc = RTCPeerConnection()
            counts: dict[str, Any] = {}
            for kind in ("video", "audio"):
                receiver = pc.addTransceiver(kind, direction="recvonly").receiver
                count = counts[kind] = {"packets": 0, "first": None, "last": None, "window": [0, None, None]}

                async def handle(packet, arrival_time_ms, count=count):  # type: ignore[no-untyped-def]
                    # count, do not decode: the generator must stay cheap
                    seq = packet.sequence_number
                    if count["first"] is None:
                        count["first"] = seq
                        count["ext"] = seq
                    else:
                        step = (seq - count["last"]) & 0xFFFF
                        if step < 0x8000:
                            count["ext"] += step
                    count["last"] = seq
                    count["packets"] += 1
                    window = count["window"]
                    if count.get("measuring"):
                        window[0] += 1
                        window[1] = count["ext"] if window[1] is None else window[1]
                        window[2] = count["ext"]

                receiver._handle_rtp_packet = handle  # type: ignore[method-assign]
            await pc.setLocalDescription(await pc.createOffer())
            headers = {"Content-Type": "application/sdp"}
            async with http.post(url, data=pc.localDescription.sdp, headers=headers) as response:
                if response.status != 201:
                    raise RuntimeError(f"POST {url}: {response.status} {await response.text()}")
                answer = await response.text()
            await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
            peers.append(pc)
            counters.append(counts)
        deadline = time.monotonic() + 60
        while any(c["video"]["packets"] == 0 for c in counters) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        conn.send("ready")
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # go
        for c in counters:
            for count in c.values():
                count["measuring"] = True
        cpu0 = time.process_time()
        await asyncio.sleep(seconds)
        for c in counters:
            for count in c.values():
                count["measuring"] = False
        cpu = time.process_time() - cpu0
        received = expected = receiving = 0
        for c in counters:
            receiving += c["video"]["window"][0] > 0
            for count in c.values():
                got, first, last = count["window"]
                if first is not None:
                    received += got
                    expected += last - first + 1
        await asyncio.gather(*(pc.close() for pc in peers))
    return {"received": received, "expected": expected, "generator_cpu": cpu, "receiving": receiving}


def _rtsp_worker(conn: Connection, port: int, readers: int, seconds: float) -> None:
    _generator(conn, _rtsp_readers(conn, port, readers, seconds))


async def _rtsp_readers(conn: Connection, port: int, n: int, seconds: float) -> dict[str, Any]:
    sessions = [await Session.open("127.0.0.1", port, PATH, live=True) for _ in range(n)]
    for s in sessions:
        await s.play()
    await asyncio.sleep(2)
    conn.send("ready")
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)
    marks = [[len(t.seqs) for t in s.tracks] for s in sessions]
    await asyncio.sleep(seconds)
    received = expected = receiving = 0
    for s, mark in zip(sessions, marks, strict=True):
        receiving += any(len(t.seqs) > at for t, at in zip(s.tracks, mark, strict=True))
        for track, at in zip(s.tracks, mark, strict=True):
            seqs = list(track.seqs[at:])
            if seqs:
                received += len(seqs)
                expected += ((seqs[-1] - seqs[0]) & 0xFFFF) + 1
    await asyncio.gather(*(s.close(teardown=True) for s in sessions))
    return {"received": received, "expected": expected, "receiving": receiving}


# --- one level ------------------------------------------------------------------------------------


def _run_generators(target: Any, args_per_worker: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")
    pipes, procs = [], []
    for args in args_per_worker:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=target, args=(child, *args))
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    for pipe in pipes:
        first = pipe.recv()
        if first != "ready":
            raise RuntimeError(f"generator failed: {first}")
    return pipes, procs  # type: ignore[return-value]


def measure(server: server_process.Server, kind: str, n: int, workers: int, seconds: float) -> dict[str, Any]:
    per = [n // workers + (1 if i < n % workers else 0) for i in range(workers)]
    per = [p for p in per if p]
    if kind == "whep":
        url = f"http://127.0.0.1:{server.http_port}/whep/{PATH}"
        pipes, procs = _run_generators(_whep_worker, [(url, p, seconds) for p in per])
    else:
        pipes, procs = _run_generators(_rtsp_worker, [(server.port, p, seconds) for p in per])
    cpu0, t0 = server.cpu_seconds(), time.monotonic()
    for pipe in pipes:
        pipe.send("go")
    results = [pipe.recv() for pipe in pipes]
    # the generators measure ``seconds`` from "go"; the server's CPU over the same span
    cpu = server.cpu_seconds() - cpu0
    span = time.monotonic() - t0
    for proc in procs:
        proc.join(60)
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise RuntimeError("; ".join(errors))
    received = sum(r["received"] for r in results)
    expected = sum(r["expected"] for r in results)
    return {
        "kind": kind,
        "viewers": n,
        "packets_per_viewer_second": received / n / seconds,
        "receiving": sum(r["receiving"] for r in results),  # viewers that got packets in the window
        "server_cpu_percent": 100 * cpu / span,
        "loss_percent": 100 * (1 - received / expected) if expected else None,
        "packets_received": received,
        "generator_cpu_seconds": sum(r.get("generator_cpu", 0) for r in results),
    }


def idle_cpu(server: server_process.Server, seconds: float) -> float:
    cpu0, t0 = server.cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    return 100 * (server.cpu_seconds() - cpu0) / (time.monotonic() - t0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--viewers", type=int, nargs="+", default=[200])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--workers", type=int, default=4, help="generator processes per protocol")
    args = parser.parse_args(argv)
    out = report.results_dir()
    work = Path(tempfile.gettempdir()) / "streamd-webrtc-fanout"  # the clip and the server log
    work.mkdir(exist_ok=True)
    clip = make_clip(work)
    config = work / "streamd.toml"
    config.write_text(
        "webrtc_max_pending = 1000\nwebrtc_max_pending_per_client = 1000\nwebrtc_connect_timeout = 120\n"
        "max_sessions_per_client = 5000\nmax_connections_per_client = 5000\n"
    )
    machine = report.machine()
    server = server_process.start(work, work / "server.log", "--config", str(config))
    publisher = subprocess.Popen(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(clip),
         "-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp", f"rtsp://127.0.0.1:{server.port}/{PATH}"],
    )  # fmt: skip
    rows: list[dict[str, Any]] = []
    try:
        time.sleep(3)
        baseline = idle_cpu(server, 5)
        for n in args.viewers:
            for kind in ("rtsp", "whep"):
                row = measure(server, kind, n, args.workers, args.seconds)
                row["server_cpu_percent_per_viewer"] = (row["server_cpu_percent"] - baseline) / n
                rows.append(row)
                print(json.dumps(row))
                time.sleep(3)
    finally:
        publisher.terminate()
        publisher.wait(10)
        server.stop()
    result = {
        "machine": machine,
        "baseline_server_cpu_percent": baseline,
        "rows": rows,
        "seconds": args.seconds,
    }
    (out / "webrtc_fanout.json").write_text(json.dumps(result, indent=1))
    lines = [
        "# WebRTC fan-out",
        "",
        report.machine_line(machine),
        "",
        f"One ~1 Mbit/s live path (640x360 H.264 + Opus, published by ffmpeg); server CPU with no reader "
        f"{baseline:.1f}% of a core; {args.seconds:g} s windows.",
        "",
        "| protocol | viewers (receiving) | server CPU % | CPU % per viewer | loss % | packets/s each |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        loss = "-" if row["loss_percent"] is None else f"{row['loss_percent']:.3f}"
        lines.append(
            f"| {row['kind']} | {row['viewers']} ({row['receiving']}) | {row['server_cpu_percent']:.1f} | "
            f"{row['server_cpu_percent_per_viewer']:.3f} | {loss} | {row['packets_per_viewer_second']:.0f} |"
        )
    by = {(r["kind"], r["viewers"]): r for r in rows}
    for n in args.viewers:
        if ("rtsp", n) in by and ("whep", n) in by:
            a, b = (
                by[("whep", n)]["server_cpu_percent_per_viewer"],
                by[("rtsp", n)]["server_cpu_percent_per_viewer"],
            )
            lines.append(
                f"\n{n} viewers: CPU per WebRTC viewer = {report.ratio(a, b)} x CPU per RTSP UDP reader"
            )
    (out / "webrtc_fanout.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
