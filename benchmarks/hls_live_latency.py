"""LL-HLS latency glass to glass: numpy frames stamped with the wall clock, read back by a player.

streamd runs in this process with its Python frame source (``Server.publish``): each frame carries
the wall-clock millisecond it was made as a 32-bit barcode (32 blocks of black or white, big enough
to survive x264). Players read the path as HLS and every decoded frame's barcode is compared with
the wall clock when it comes out of the decoder:

- ffmpeg (``-live_start_index -1``: from the newest segment; a plain HLS client, segments only);
- optionally hls.js in headless Chromium in low-latency mode (``--chromium``: parts, blocking
  reloads, preload hints), the frame read from a canvas at each ``requestVideoFrameCallback``.

``python -m benchmarks.hls_live_latency [--seconds 30] [--chromium]``; results in
``benchmarks/results/<date>/hls-live-latency-*.json|md``. Run it niced: ``nice -n 5 python -m ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import machine, machine_line, results_dir
from benchmarks.server_process import free_even_udp_pair, free_port
from streamd.embed import serve_in_thread

WIDTH, HEIGHT, FPS = 320, 240, 25
BITS, BLOCK = 32, 10  # the barcode: 32 blocks of 10 x 20 pixels on the top rows
PATH = "bench/latency"


def stamp(frame: np.ndarray, millis: int) -> None:
    for bit in range(BITS):
        value = 255 if (millis >> (BITS - 1 - bit)) & 1 else 0
        frame[0:20, bit * BLOCK : (bit + 1) * BLOCK] = value


def read_stamp(gray: np.ndarray) -> int:
    bits = 0
    for bit in range(BITS):
        block = gray[4:16, bit * BLOCK + 2 : (bit + 1) * BLOCK - 2]
        bits = (bits << 1) | int(block.mean() > 128)
    return bits


def now_millis() -> int:
    return int(time.time() * 1000) & 0xFFFFFFFF


def feed(server: Any, stop: threading.Event) -> None:
    publisher = server.publish(PATH, WIDTH, HEIGHT, FPS, pixel_format="gray", keyframe_interval=1.0)
    frame = np.full((HEIGHT, WIDTH), 96, np.uint8)
    start = time.monotonic()
    n = 0
    while not stop.is_set():
        due = start + n / FPS
        time.sleep(max(0.0, due - time.monotonic()))
        frame[20:, :] = (n * 7) % 200 + 20  # something moving, so frames differ
        stamp(frame, now_millis())
        publisher.send(frame)
        n += 1
    publisher.close()


def ffmpeg_latencies(url: str, seconds: float) -> list[float]:
    command = ["nice", "-n", "5", "ffmpeg", "-nostdin", "-loglevel", "error", "-live_start_index", "-1",
               "-i", url, "-f", "rawvideo", "-pix_fmt", "gray", "-"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE)
    assert process.stdout is not None
    size = WIDTH * HEIGHT
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            data = process.stdout.read(size)
            if len(data) < size:
                break
            arrived = now_millis()
            gray = np.frombuffer(data, np.uint8).reshape(HEIGHT, WIDTH)
            latencies.append(((arrived - read_stamp(gray)) & 0xFFFFFFFF) / 1000)
    finally:
        process.kill()  # ffmpeg's HLS reader may sit in a blocking read and not heed SIGTERM
        process.wait(10)
    return latencies


CHROMIUM_SCRIPT = """(() => {{
  const video = document.createElement('video'); video.muted = true; document.body.appendChild(video);
  const canvas = document.createElement('canvas'); canvas.width = {w}; canvas.height = 20;
  const context = canvas.getContext('2d', {{willReadFrequently: true}});
  window.latencies = [];
  const hls = new Hls({{lowLatencyMode: true}}); window.hls = hls;
  hls.loadSource({url!r}); hls.attachMedia(video); video.play().catch(() => {{}});
  const onFrame = () => {{
    context.drawImage(video, 0, 0, {w}, 20, 0, 0, {w}, 20);
    const pixels = context.getImageData(0, 0, {w}, 20).data;
    let bits = 0;
    for (let bit = 0; bit < {bits}; bit++) {{
      const x = bit * {block} + {block} / 2, y = 10;
      bits = (bits * 2) + (pixels[(y * {w} + x) * 4] > 128 ? 1 : 0);
    }}
    const now = Date.now() % 4294967296;
    window.latencies.push(((now - bits + 4294967296) % 4294967296) / 1000);
    video.requestVideoFrameCallback(onFrame);
  }};
  video.requestVideoFrameCallback(onFrame);
  return true;
}})()"""


async def chromium_latencies(origin: str, url: str, seconds: float) -> list[float]:
    from tests.integration.chromium import chromium_tab
    from tests.integration.hlsjs import load_hls_js

    with tempfile.TemporaryDirectory() as tmp:
        async with chromium_tab(Path(tmp)) as tab:
            await tab.call("Page.navigate", url=origin + "/login")
            await tab.wait_for("document.readyState === 'complete'")
            await load_hls_js(tab)
            await tab.evaluate(CHROMIUM_SCRIPT.format(w=WIDTH, url=url, bits=BITS, block=BLOCK))
            await tab.wait_for("window.latencies.length > 0", timeout=40)
            await asyncio.sleep(seconds)
            values = await tab.evaluate("window.latencies")
            return [float(v) for v in values]


def summary(values: list[float], skip_seconds: float = 3.0) -> dict[str, float | int]:
    steady = values[int(skip_seconds * FPS) :] or values  # the first seconds: the player catching up
    steady = sorted(steady)
    if not steady:
        return {"frames": 0}

    def pct(p: float) -> float:
        return round(steady[min(len(steady) - 1, int(p * len(steady)))], 3)

    return {"frames": len(steady), "p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99),
            "mean": round(statistics.fmean(steady), 3)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--chromium", action="store_true", help="also hls.js in headless Chromium")
    parser.add_argument("--segment", type=float, default=1.0, help="hls_live_segment_seconds")
    parser.add_argument("--part", type=float, default=0.2, help="hls_part_seconds")
    args = parser.parse_args()
    http_port = free_port()
    server = serve_in_thread(
        http=True,
        host="127.0.0.1",
        rtsp_port=free_port(),
        rtp_port=free_even_udp_pair(),
        http_port=http_port,
        hls_live_segment_seconds=args.segment,
        hls_part_seconds=args.part,
    )
    stop = threading.Event()
    feeder = threading.Thread(target=feed, args=(server, stop), daemon=True)
    feeder.start()
    origin = f"http://127.0.0.1:{http_port}"
    url = f"{origin}/hls/{PATH}/main/media.m3u8"
    results: dict[str, Any] = {
        "machine": machine(),
        "segment_seconds": args.segment,
        "part_seconds": args.part,
    }
    try:
        time.sleep(3)  # a few segments first, as a viewer joining a running stream finds them
        results["ffmpeg"] = summary(ffmpeg_latencies(url, args.seconds))
        if args.chromium:
            results["hls.js"] = summary(asyncio.run(chromium_latencies(origin, url, args.seconds)))
    finally:
        stop.set()
        feeder.join(5)
        server.stop()
    folder = results_dir()
    name = f"hls-live-latency-{time.strftime('%H%M%S')}"
    (folder / f"{name}.json").write_text(json.dumps(results, indent=2))
    lines = [
        f"# LL-HLS latency glass to glass ({args.segment:g} s segments, {args.part:g} s parts)",
        "",
        machine_line(results["machine"]),
        "",
        "| player | frames | p50 s | p90 s | p99 s |",
        "|---|---|---|---|---|",
    ]
    for player in ("ffmpeg", "hls.js"):
        if player in results:
            r = results[player]
            lines.append(
                f"| {player} | {r.get('frames')} | {r.get('p50')} | {r.get('p90')} | {r.get('p99')} |"
            )
    (folder / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
