"""Cluster benchmark (issue 18, 5b): one publisher, readers spread over three nodes on Redis.

Node A is the origin (ffmpeg publishes ``live/bench`` to it); B and C are edges that pull the
path from A (one edge relay each, shared by their readers). Three phases of ``--seconds`` each,
the CPU time of every process measured from ``/proc`` over each:

1. publisher only;
2. one reader on B and one on C: each edge pulls the path (A serves two relay sessions);
3. ``--readers`` more readers on each of A, B and C.

CPU per reader on a node = (its CPU in phase 3 - in phase 2) / readers; the origin's cost per
edge = (A in phase 2 - A in phase 1) / 2. Readers are the lean benchmark receiver over UDP, in
this process (its CPU is reported too); loss is counted per track from sequence numbers. The
whole benchmark runs niced (the machine is shared). ``python -m benchmarks.cluster --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import report, server_process
from benchmarks.client import Session

CLIP = "640x360 25 fps H.264 (800 kbit/s, GOP 1 s, no B-frames) + AAC 48 kHz stereo, about 1 Mbit/s"
PATH = "live/bench"
NICE = 10


def make_clip(path: Path) -> None:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=d=10:s=640x360:r=25",
         "-f", "lavfi", "-i", "sine=d=10:sample_rate=48000", "-ac", "2", "-c:v", "libx264", "-b:v", "800k",
         "-g", "25", "-bf", "0", "-c:a", "aac", "-b:a", "128k", "-y", str(path)],
        check=True, timeout=120,
    )  # fmt: skip


class Redis:
    def __init__(self, tmp: Path) -> None:
        self.port = server_process.free_port()
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(tmp)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True,
                             check=False).stdout.strip() != "PONG":  # fmt: skip
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)


def loss(sessions: list[Session]) -> dict[str, int]:
    expected = lost = 0
    for session in sessions:
        for track in session.tracks:
            if track.stats is not None:
                expected += track.stats.expected
                lost += max(0, track.stats.lost)
    return {"expected": expected, "lost": lost}


async def open_readers(server: server_process.Server, n: int) -> list[Session]:
    async def one() -> Session:
        session = await Session.open("127.0.0.1", server.port, PATH, live=True)
        await session.play()
        return session

    readers: list[Session] = []
    while len(readers) < n:
        readers += await asyncio.gather(*(one() for _ in range(min(10, n - len(readers)))))
    return readers


async def keep_alive(readers: list[Session]) -> None:
    """RTCP receiver reports every 5 s, as players send them: UDP sessions live on them."""
    while True:
        await asyncio.sleep(5)
        now = time.monotonic()
        for session in list(readers):
            session.send_receiver_reports(now)


async def run(
    args: argparse.Namespace, nodes: dict[str, server_process.Server], redis: Redis
) -> dict[str, Any]:
    def sample() -> dict[str, float]:
        cpu = {name: node.cpu_seconds() for name, node in nodes.items()}
        cpu["redis"] = redis.cpu_seconds()
        cpu["generator"] = (
            resource.getrusage(resource.RUSAGE_SELF).ru_utime
            + resource.getrusage(resource.RUSAGE_SELF).ru_stime
        )
        return cpu

    async def phase(name: str) -> dict[str, Any]:
        await asyncio.sleep(args.settle)
        before, start = sample(), time.monotonic()
        await asyncio.sleep(args.seconds)
        after, window = sample(), time.monotonic() - start
        use = {key: (after[key] - before[key]) / window for key in before}
        print(f"{name}: " + ", ".join(f"{key} {100 * value:.1f}%" for key, value in use.items()))
        return {"phase": name, "window": window, "cpu_share": use}

    phases = [await phase("publisher only")]
    everyone: list[Session] = []
    reports = asyncio.get_running_loop().create_task(keep_alive(everyone))
    edge_readers = await open_readers(nodes["B"], 1) + await open_readers(nodes["C"], 1)
    everyone += edge_readers
    phases.append(await phase("edges pulling (one reader on B and on C)"))
    readers = {}
    for name, node in nodes.items():
        readers[name] = await open_readers(node, args.readers)
        everyone += readers[name]
    phases.append(await phase(f"{args.readers} more readers on each node"))
    reports.cancel()
    counts = {name: loss(sessions) for name, sessions in readers.items()}
    await asyncio.gather(*(session.close() for session in everyone))
    base, full = phases[1]["cpu_share"], phases[2]["cpu_share"]
    per_reader = {name: (full[name] - base[name]) / args.readers for name in nodes}
    per_edge = (phases[1]["cpu_share"]["A"] - phases[0]["cpu_share"]["A"]) / 2
    return {"phases": phases, "per_reader_cpu_share": per_reader, "origin_per_edge_cpu_share": per_edge,
            "loss": counts, "readers_per_node": args.readers}  # fmt: skip


def markdown(result: dict[str, Any], machine: dict[str, str | int]) -> str:
    lines = [
        f"# Cluster: one publisher, readers on three nodes ({time.strftime('%Y-%m-%d %H:%M')})",
        "",
        f"Machine: {report.machine_line(machine)}.",
        "",
        f"Clip: {CLIP}, published to A with ffmpeg `-re`; B and C pull it from A (edge relays over",
        f"TCP); readers over UDP, {result['readers_per_node']} per node in phase 3. CPU as a share of",
        "one core, from /proc, over each phase.",
        "",
        "| phase | A (origin) | B (edge) | C (edge) | redis | load generator |",
        "|---|---|---|---|---|---|",
    ]
    for phase in result["phases"]:
        use = phase["cpu_share"]
        lines.append(
            f"| {phase['phase']} | {100 * use['A']:.1f}% | {100 * use['B']:.1f}% | {100 * use['C']:.1f}% "
            f"| {100 * use['redis']:.2f}% | {100 * use['generator']:.1f}% |"
        )
    per = result["per_reader_cpu_share"]
    lines += [
        "",
        f"CPU per reader: A (origin) {100 * per['A']:.2f}%, B (edge) {100 * per['B']:.2f}%, "
        f"C (edge) {100 * per['C']:.2f}% of a core; the origin's cost per edge pulling: "
        f"{100 * result['origin_per_edge_cpu_share']:.2f}%.",
        "",
        "Loss in phase 3 (packets lost / expected, per node): "
        + ", ".join(f"{name} {c['lost']}/{c['expected']}" for name, c in result["loss"].items())
        + ".",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cluster", description=__doc__.split("\n")[0])
    parser.add_argument("--readers", type=int, default=30, help="readers per node in phase 3 (30)")
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds measured per phase (15)")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before each phase (3)")
    args = parser.parse_args(argv)
    for tool in ("ffmpeg", "redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            print(f"needs {tool}")
            return 2
    os.nice(NICE)  # a shared machine: everything this starts runs niced too
    machine = report.machine()
    tmp = Path(tempfile.mkdtemp(prefix="streamd-cluster-"))
    make_clip(tmp / "clip.mp4")
    (tmp / "media").mkdir()
    config = tmp / "node.toml"  # every reader comes from 127.0.0.1: lift the per-client caps
    config.write_text("max_connections_per_client = 2000\nmax_sessions_per_client = 2000\n")
    redis = Redis(tmp)
    nodes: dict[str, server_process.Server] = {}
    publisher = None
    try:
        for name in "ABC":
            nodes[name] = server_process.start(
                tmp / "media", tmp / f"{name}.log", "--cluster", redis.url, "--config", str(config)
            )
        publisher = subprocess.Popen(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1",
             "-i", str(tmp / "clip.mp4"), "-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp",
             f"rtsp://127.0.0.1:{nodes['A'].port}/{PATH}"],
        )  # fmt: skip
        time.sleep(2)
        result = asyncio.run(run(args, nodes, redis))
    finally:
        if publisher is not None:
            publisher.terminate()
            publisher.wait(10)
        for node in nodes.values():
            node.stop()
        redis.stop()
    result["machine"] = machine
    out = report.results_dir() / f"cluster-{time.strftime('%Y%m%d-%H%M%S')}"
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    text = markdown(result, machine)
    out.with_suffix(".md").write_text(text)
    print(text)
    print(f"results: {out}.md, logs in {tmp}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
