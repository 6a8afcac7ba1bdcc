"""Many HLS viewers of one live path, and the CPU each costs streamd, beside RTSP readers.

ffmpeg publishes a clip (640x360 25 fps H.264 + AAC, a keyframe a second) over RTSP, looping. A
load generator in processes of its own (``--processes``) runs ``--viewers`` HLS viewers that
follow the playlist as players do:

- ``ll`` (hls.js in low-latency mode): fetch the preload-hinted part and, at the same time, the
  blocking delta reload that will list it (``_HLS_msn``/``_HLS_part``, ``_HLS_skip=YES``); both
  wait at streamd until the part is complete; then the next: two requests per part, five parts a
  second;
- ``plain`` (a plain HLS client): reload the playlist every target duration and fetch each new
  segment once.

streamd's CPU time (``/proc/<pid>/stat``) is measured over the same steady window with the
publisher alone, with the HLS viewers, then with ``--rtsp-readers`` RTSP readers over TCP (the lean
client of benchmarks/client.py) instead: CPU per viewer and per reader, side by side.

``nice -n 5 python -m benchmarks.hls_live_viewers [--viewers 1000] [--modes ll plain]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import queue
import re
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.report import machine, machine_line, results_dir
from benchmarks.server_process import Server, start

PATH = "live/bench"
_HINT = re.compile(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([0-9a-f]{8}-part[0-9]+\.m4s)"')
_SEQUENCE = re.compile(r"#EXT-X-MEDIA-SEQUENCE:([0-9]+)")
_SEGMENT = re.compile(r"^([0-9a-f]{8}-([0-9]+)\.m4s)$", re.M)
_TARGET = re.compile(r"#EXT-X-TARGETDURATION:([0-9]+)")


def make_clip(folder: Path) -> Path:
    clip = folder / "clip.mp4"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=d=20:s=640x360:r=25",
         "-f", "lavfi", "-i", "sine=d=20", "-c:v", "libx264", "-g", "25", "-bf", "0", "-b:v", "800k",
         "-c:a", "aac", "-y", str(clip)],
        check=True, timeout=120,
    )  # fmt: skip
    return clip


def _next_part(text: str) -> tuple[int, int]:
    """(MSN, index) of the hinted part: after the complete segments, after the parts listed since."""
    first = int(m.group(1)) if (m := _SEQUENCE.search(text)) else 0
    complete = text.count("#EXTINF:")
    skipped = int(m.group(1)) if (m := re.search(r"SKIPPED-SEGMENTS=([0-9]+)", text)) else 0
    tail = text.rsplit("#EXTINF:", 1)[-1] if complete else text
    return first + skipped + complete, tail.count("#EXT-X-PART:")


async def _viewer(base: str, mode: str, until: float, stats: dict[str, int], session: Any) -> None:
    import aiohttp

    async def get(url: str) -> bytes | None:
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=20)) as response:
                body = await response.read()
                stats["requests"] += 1
                stats["bytes"] += len(body)
                if response.status != 200:
                    stats[f"status {response.status}"] += 1
                    return None
                return body
        except (aiohttp.ClientError, TimeoutError):
            stats["failed"] += 1
            return None

    playlist = await get(base + "media.m3u8")
    if mode == "plain":
        seen: set[str] = set()
        while time.monotonic() < until:
            started = time.monotonic()
            if playlist is not None:
                text = playlist.decode()
                target = int(m.group(1)) if (m := _TARGET.search(text)) else 1
                for name, _ in _SEGMENT.findall(text)[-3:]:
                    if name not in seen:
                        seen.add(name)
                        if await get(base + name) is not None:
                            stats["segments"] += 1
            else:
                target = 1
            await asyncio.sleep(max(0.0, target - (time.monotonic() - started)))
            playlist = await get(base + "media.m3u8")
        return
    while time.monotonic() < until:
        hint = _HINT.search(playlist.decode()) if playlist is not None else None
        if hint is None:
            await asyncio.sleep(0.2)
            playlist = await get(base + "media.m3u8")
            continue
        msn, part = _next_part(playlist.decode())  # type: ignore[union-attr]
        # as hls.js: the hinted part and the playlist that will list it, both waiting at streamd
        data, playlist = await asyncio.gather(
            get(base + hint.group(1)), get(f"{base}media.m3u8?_HLS_msn={msn}&_HLS_part={part}&_HLS_skip=YES")
        )
        if data is not None:
            stats["parts"] += 1


def _viewers_process(base: str, mode: str, count: int, ramp: float, seconds: float, out: Any) -> None:
    import collections

    import aiohttp

    async def run() -> dict[str, int]:
        stats: collections.Counter[str] = collections.Counter()
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        async with aiohttp.ClientSession(connector=connector) as session:
            until = time.monotonic() + ramp + seconds
            tasks = []
            for _ in range(count):
                tasks.append(asyncio.ensure_future(_viewer(base, mode, until, stats, session)))
                await asyncio.sleep(ramp / count)
            await asyncio.gather(*tasks)
        return dict(stats)

    out.put(asyncio.run(run()))


def _rtsp_process(host: str, port: int, count: int, ramp: float, seconds: float, out: Any) -> None:
    from benchmarks.client import Session

    async def run() -> dict[str, int]:
        sessions, failed = [], 0
        for _ in range(count):
            try:
                session = await Session.open(host, port, PATH, tcp=True, live=True)
                await session.play()
                sessions.append(session)
            except (OSError, RuntimeError):
                failed += 1
            await asyncio.sleep(ramp / count)
        await asyncio.sleep(seconds)
        packets = sum(len(t.arrivals) for s in sessions for t in s.tracks)
        for session in sessions:
            with contextlib.suppress(OSError, RuntimeError):
                await session.close(teardown=False)
        return {"readers": len(sessions), "packets": packets, "failed": failed}

    out.put(asyncio.run(run()))


def measure(
    server: Server, target: Any, args: tuple[Any, ...], processes: int, ramp: float, seconds: float
) -> dict[str, Any]:
    """Run ``target`` in ``processes`` processes; streamd's CPU over the steady window."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    workers = [context.Process(target=target, args=(*args, ramp, seconds, out)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    time.sleep(ramp + 1.0)  # every client started (and the spawn's imports done)
    cpu0, t0 = server.cpu_seconds(), time.monotonic()
    time.sleep(seconds - 2.0)
    cpu1, t1 = server.cpu_seconds(), time.monotonic()
    results = []
    for _ in workers:
        try:
            results.append(out.get(timeout=seconds + ramp + 60))
        except queue.Empty:
            results.append({"workers_lost": 1})
    for worker in workers:
        worker.join(30)
        if worker.is_alive():
            worker.kill()
    total: dict[str, int] = {}
    for result in results:
        for key, value in result.items():
            total[key] = total.get(key, 0) + value
    return {
        "cpu_percent": round(100 * (cpu1 - cpu0) / (t1 - t0), 1),
        "window_seconds": round(t1 - t0, 1),
        **total,
    }


def idle_cpu(server: Server, seconds: float) -> float:
    cpu0, t0 = server.cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    return round(100 * (server.cpu_seconds() - cpu0) / (time.monotonic() - t0), 1)


class Publisher:
    """ffmpeg publishing the clip in a loop; started again if streamd dropped it (overload)."""

    def __init__(self, clip: Path, server: Server, base: str) -> None:
        self.clip, self.server, self.base = clip, server, base
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = -1

    def ensure(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        self.restarts += 1
        self.process = subprocess.Popen(
            ["ffmpeg", "-nostdin", "-loglevel", "quiet", "-re", "-stream_loop", "-1", "-i", str(self.clip),
             "-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp",
             f"rtsp://127.0.0.1:{self.server.port}/{PATH}"],
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the stream exists once a playlist is served
            try:
                urllib.request.urlopen(self.base + "media.m3u8", timeout=20).read()
                return
            except OSError:
                time.sleep(0.5)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--processes", type=int, default=4, help="load generator processes")
    parser.add_argument("--rtsp-readers", type=int, default=100)
    parser.add_argument("--modes", nargs="+", default=["ll", "plain"], choices=["ll", "plain"])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--ramp", type=float, default=5.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hls-viewers-"))
    clip = make_clip(tmp)
    server = start(tmp / "media-none", tmp / "server.log")
    base = f"http://127.0.0.1:{server.http_port}/hls/{PATH}/main/"
    publisher = Publisher(clip, server, base)
    results: dict[str, Any] = {"machine": machine(), "seconds": args.seconds, "runs": []}
    try:
        publisher.ensure()
        results["publisher_only_cpu_percent"] = idle_cpu(server, 10)
        for count in args.viewers:
            for mode in args.modes:
                publisher.ensure()
                per_process = max(1, count // args.processes)
                run = measure(
                    server,
                    _viewers_process,
                    (base, mode, per_process),
                    args.processes,
                    args.ramp,
                    args.seconds,
                )
                run.update(
                    mode=mode, viewers=per_process * args.processes, publisher_dropped=not publisher.alive
                )
                results["runs"].append(run)
                (tmp / "partial.json").write_text(json.dumps(results, indent=2))
                print(f"{mode} x {run['viewers']}: {run}", flush=True)
                time.sleep(3)
        if args.rtsp_readers:
            publisher.ensure()
            results["rtsp"] = measure(
                server,
                _rtsp_process,
                ("127.0.0.1", server.port, args.rtsp_readers),
                1,
                args.ramp,
                args.seconds,
            )
    finally:
        publisher.stop()
        server.stop()
    base_cpu = results["publisher_only_cpu_percent"]
    lines = [
        "# HLS viewers of one live path (640x360 25 fps H.264 800 kbit/s + AAC)",
        "",
        machine_line(results["machine"]),
        "",
        f"streamd with the publisher alone: {base_cpu} % of a core.",
        "",
        "| clients | streamd CPU % | CPU ms per client-second | requests/s | what they got | errors |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        count, mode = r["viewers"], r["mode"]
        per = 10 * (r["cpu_percent"] - base_cpu) / count
        watched = count * (args.seconds + args.ramp / 2)  # viewer-seconds (viewers start over the ramp)
        if mode == "ll":
            got = f"{r.get('parts', 0) / watched:.2f} parts/s each (5 made)"
        else:
            got = f"{r.get('segments', 0) / watched:.2f} segments/s each (1 made)"
        errors = {k: v for k, v in r.items() if k.startswith("status") or k == "failed"}
        if r["publisher_dropped"]:
            errors["publisher dropped"] = 1
        rate = r.get("requests", 0) / (args.seconds + args.ramp / 2)
        cpu = r["cpu_percent"]
        lines.append(
            f"| {count} HLS ({mode}) | {cpu} | {per:.3f} | {rate:.0f} | {got} | {errors or 'none'} |"
        )
    if "rtsp" in results:
        r = results["rtsp"]
        per = 10 * (r["cpu_percent"] - base_cpu) / max(1, r.get("readers", 1))
        lines.append(f"| {r.get('readers')} RTSP (TCP) | {r['cpu_percent']} | {per:.3f} | - | RTP | - |")
    lines.append("")
    lines.append(f"Publisher restarts (streamd dropped it under load): {publisher.restarts}.")
    folder = results_dir()
    name = f"hls-live-viewers-{time.strftime('%H%M%S')}"
    (folder / f"{name}.json").write_text(json.dumps(results, indent=2))
    (folder / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
