"""What reading a live path on another worker costs: the internal relay, measured.

With ``--workers 2`` a live path lives in the worker its publisher reached; readers on the other
worker get it through one relay (RTSP interleaved over the owner's unix socket). This runs an
ffmpeg publisher on worker 0 and the same number of UDP readers first on worker 0 (same worker),
then on worker 1 (through the relay), and reports each worker's CPU over the window: the
difference is the relay's cost (one more reader session on the owner, one more ingest, i.e.
depacketize + packetize, on the other).

    python -m benchmarks.workers_relay --readers 20 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.client import Session
from benchmarks.workers import start
from tests.integration.workers_pin import steer

PATH = "live/bench"


def cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(port: int, steering_port: int, readers: int, seconds: float, pids: dict[int, int]) -> dict:
    sessions = [
        await Session.open("127.0.0.1", steering_port, PATH, live=True, url_port=port) for _ in range(readers)
    ]
    for s in sessions:
        await s.play()
    await asyncio.sleep(2)
    before, t0 = {w: cpu(p) for w, p in pids.items()}, time.monotonic()
    await asyncio.sleep(seconds)
    wall = time.monotonic() - t0
    used = {w: 100 * (cpu(p) - before[w]) / wall for w, p in pids.items()}
    packets = sum(len(t.arrivals) for s in sessions for t in s.tracks)
    for s in sessions:
        await s.close()
    return {"cpu_percent": used, "packets": packets}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.workers_relay", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--readers", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    out = args.out or report.results_dir()
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        from media.testsrc import write_synthetic_media

        media = Path(tmp)
        write_synthetic_media(media / "clip.mp4", seconds=20, size=(640, 360), fps=25, gop=25, bframes=False)
        write_synthetic_media(
            media / "bframes.mp4", seconds=1, size=(160, 120), fps=25, gop=25, bframes=False
        )
        log = out / "workers-relay.log"
        server = start(media, log, 2)
        pids = {int(i): int(p) for i, p in re.findall(r"worker (\d+) \(pid (\d+)\) ready", log.read_text())}
        publisher_steer = None
        try:
            rtp = server.rtp_port
            publisher_steer = steer(server.port, rtp, 0)
            publisher = subprocess.Popen(
                ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i",
                 str(media / "clip.mp4"), "-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp",
                 publisher_steer.url(PATH)],
            )  # fmt: skip
            time.sleep(3)
            idle0, t0 = {w: cpu(p) for w, p in pids.items()}, time.monotonic()
            time.sleep(args.seconds)
            results["publisher only"] = {
                "cpu_percent": {
                    w: 100 * (cpu(p) - idle0[w]) / (time.monotonic() - t0) for w, p in pids.items()
                }
            }
            for case, worker in (
                ("readers on the publisher's worker", 0),
                ("readers on the other worker", 1),
            ):
                with steer(server.port, rtp, *[worker] * args.readers) as steering:
                    results[case] = asyncio.run(
                        measure(server.port, steering.port, args.readers, args.seconds, pids)
                    )
                time.sleep(12)  # the relay closes 10 s after its last reader
            publisher.terminate()
            publisher.wait(10)
        finally:
            if publisher_steer is not None:
                publisher_steer.close()
            server.stop()
    same = sum(results["readers on the publisher's worker"]["cpu_percent"].values())
    other = sum(results["readers on the other worker"]["cpu_percent"].values())
    rep = {
        "benchmark": "workers_relay",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": report.machine(),
        "readers": args.readers,
        "seconds": args.seconds,
        "results": results,
        "relay_cpu_percent": other - same,
    }
    (out / "workers-relay.json").write_text(json.dumps(rep, indent=1))
    lines = [
        f"# Reading a live path on another worker ({rep['date']})",
        "",
        report.machine_line(rep["machine"]),
        "",
    ]
    lines += ["| case | worker 0 CPU % | worker 1 CPU % | packets received |", "|---|---|---|---|"]
    for case, r in results.items():
        c = r["cpu_percent"]
        lines.append(f"| {case} | {c[0]:.1f} | {c[1]:.1f} | {r.get('packets', '-')} |")
    lines += ["", f"The relay between the workers: {other - same:+.1f} % of a core (both workers together)."]
    text = "\n".join(lines) + "\n"
    (out / "workers-relay.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
