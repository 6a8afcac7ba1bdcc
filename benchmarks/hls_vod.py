"""HLS VOD: how fast a file nobody asked for yet starts playing, and a seek into it.

A long H.264 + AAC clip (a 60 s encode repeated with ``-c copy`` to ``--minutes``, a keyframe every
2 s) is hard-linked under ``--files`` names, so every name is a file streamd has never indexed
nor segmented (the data itself is in the page cache, as a served library mostly is). For each
name a player's first requests are timed one by one, on a fresh connection each, as a player
starting cold makes them: the multivariant playlist (the first request for a file: probes it,
reads the keyframe index and cuts), the media playlist, the init segment, segment 0 (remuxed now:
the figure issue 17 asks for), then a segment in the middle (a seek, also remuxed now), and
segment 0 again (from the cache).

``python -m benchmarks.hls_vod [--files 30] [--minutes 10] [--size 1280x720]``; results in
``benchmarks/results/<date>/hls-vod.json|md``. Run it niced: ``nice -n 5 python -m ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import m3u8

from benchmarks.report import machine, machine_line, results_dir
from benchmarks.server_process import start

STEPS = ("multivariant", "media playlist", "init segment", "segment 0", "middle segment", "segment 0 again")


def make_clip(folder: Path, minutes: int, size: str) -> Path:
    """``minutes`` of H.264 (x264 ultrafast, GOP 2 s) + AAC: one minute encoded, then repeated."""
    ffmpeg = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y"]
    minute = folder / "minute.mp4"
    subprocess.run(
        [*ffmpeg, "-f", "lavfi", "-i", f"testsrc2=d=60:s={size}:r=25", "-f", "lavfi", "-i", "sine=d=60",
         "-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-b:v", "3M", "-c:a", "aac", str(minute)],
        check=True, timeout=600,
    )  # fmt: skip
    listing = folder / "list.txt"
    listing.write_text("".join(f"file '{minute}'\n" for _ in range(minutes)))
    clip = folder / "source.mp4"
    subprocess.run(
        [*ffmpeg, "-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", "-movflags", "+faststart",
         str(clip)],
        check=True, timeout=600,
    )  # fmt: skip
    return clip


def wait_http(port: int) -> None:
    """The HTTP side listens just after the RTSP port, which is what ``start`` waits for."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def timed_get(url: str) -> tuple[float, bytes]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        body = response.read()
    return (time.perf_counter() - started) * 1000, body


def one_file(base: str, name: str) -> dict[str, float]:
    times: dict[str, float] = {}
    times["multivariant"], body = timed_get(f"{base}/hls/{name}/index.m3u8")
    variant = m3u8.loads(body.decode()).playlists[0].uri
    times["media playlist"], body = timed_get(f"{base}/hls/{name}/{variant}")
    media = m3u8.loads(body.decode())
    folder = f"{base}/hls/{name}/{variant.rsplit('/', 1)[0]}"
    times["init segment"], _ = timed_get(f"{folder}/{media.segment_map[0].uri}")
    times["segment 0"], _ = timed_get(f"{folder}/{media.segments[0].uri}")
    times["middle segment"], _ = timed_get(f"{folder}/{media.segments[len(media.segments) // 2].uri}")
    times["segment 0 again"], _ = timed_get(f"{folder}/{media.segments[0].uri}")
    times["segments listed"] = len(media.segments)
    return times


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=30, help="cold files, each timed once")
    parser.add_argument("--minutes", type=int, default=10, help="length of the clip")
    parser.add_argument("--size", default="1280x720", help="picture size")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hls-vod-bench-") as scratch:
        root = Path(scratch)
        media = root / "media"
        media.mkdir()
        clip = make_clip(root, args.minutes, args.size)
        for i in range(args.files):
            os.link(clip, media / f"clip-{i:03d}.mp4")
        server = start(media, root / "server.log")
        try:
            base = f"http://127.0.0.1:{server.http_port}"
            wait_http(server.http_port)
            runs = [one_file(base, f"clip-{i:03d}.mp4") for i in range(args.files)]
            cpu = server.cpu_seconds()
        finally:
            server.stop()
        summary = {
            step: {
                "p50_ms": round(statistics.median(r[step] for r in runs), 1),
                "p90_ms": round(percentile([r[step] for r in runs], 0.9), 1),
                "max_ms": round(max(r[step] for r in runs), 1),
            }
            for step in STEPS
        }
        size_mb = clip.stat().st_size / 1e6
    result = {
        "machine": machine(),
        "files": args.files,
        "clip": {
            "minutes": args.minutes,
            "size": args.size,
            "megabytes": round(size_mb, 1),
            "gop_seconds": 2,
        },
        "server_cpu_seconds": round(cpu, 2),
        "steps": summary,
        "segments_listed": runs[0]["segments listed"],
        "runs": runs,
    }
    out = results_dir()
    (out / "hls-vod.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        f"# HLS VOD cold start ({args.files} files never seen, {args.minutes} min {args.size} H.264 + AAC, "
        f"{size_mb:.0f} MB each)",
        "",
        machine_line(result["machine"]),
        "",
        "| request | p50 ms | p90 ms | max ms |",
        "|---|---|---|---|",
        *(f"| {step} | {v['p50_ms']} | {v['p90_ms']} | {v['max_ms']} |" for step, v in summary.items()),
        "",
    ]
    (out / "hls-vod.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
