"""Glass-to-glass latency: WHEP (aiortc) vs RTSP (FFmpeg via PyAV) vs /mp4, in one run.

Frames from the numpy API carry their send time in the picture (24 black/white blocks: the wall
clock in ms, mod 2^24); each reader, a process of its own, decodes every frame it gets and reads
the blocks back: latency = arrival - send, through encoding, the server, the network and the
reader's buffering and decoding. All readers watch the same frames at the same time.

    python -m benchmarks.webrtc_latency --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from benchmarks import report

W, H, FPS = 320, 240, 25
BITS, BLOCK = 24, 13
PATH = "live/latency"


def stamp(frame: np.ndarray, ms: int) -> None:
    for bit in range(BITS):
        value = 255 if ms >> bit & 1 else 0
        frame[0:BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = value


def read_stamp(rgb: np.ndarray) -> int:
    ms = 0
    for bit in range(BITS):
        if rgb[BLOCK // 2, bit * BLOCK + BLOCK // 2].mean() > 128:
            ms |= 1 << bit
    return ms


def latency_ms(rgb: np.ndarray) -> float:
    now = int(time.time() * 1000) & (2**BITS - 1)
    return float((now - read_stamp(rgb)) % 2**BITS)


# --- readers ----------------------------------------------------------------------------------------


def _reader(conn: Connection, kind: str, url: str, seconds: float) -> None:
    try:
        values = asyncio.run(_whep(url, seconds)) if kind == "whep" else _pyav(url, seconds, kind)
        conn.send({"latencies": values})
    except Exception as exc:
        conn.send({"error": f"{exc.__class__.__name__}: {exc}"})


def _pyav(url: str, seconds: float, kind: str) -> list[float]:
    import av

    options = {"fflags": "nobuffer", "flags": "low_delay"}
    if kind == "rtsp":
        options |= {"rtsp_transport": "udp", "max_delay": "0", "reorder_queue_size": "0"}
    values: list[float] = []
    with av.open(url, options=options, timeout=10) as container:
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"
        start = time.monotonic()
        for frame in container.decode(stream):
            if time.monotonic() - start > 1:  # the first second: joining, not steady state
                values.append(latency_ms(frame.to_ndarray(format="rgb24")))
            if time.monotonic() - start > seconds + 1:
                break
    return values


async def _whep(url: str, seconds: float) -> list[float]:
    import aiohttp
    from aiortc import RTCPeerConnection, RTCSessionDescription

    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    tracks: asyncio.Queue[Any] = asyncio.Queue()
    pc.on("track", tracks.put_nowait)
    await pc.setLocalDescription(await pc.createOffer())
    async with aiohttp.ClientSession() as http:
        headers = {"Content-Type": "application/sdp"}
        async with http.post(url, data=pc.localDescription.sdp, headers=headers) as response:
            answer = await response.text()
            if response.status != 201:
                raise RuntimeError(f"{response.status}: {answer}")
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    track = await tracks.get()
    values: list[float] = []
    start = time.monotonic()
    while time.monotonic() - start < seconds + 1:
        frame = await track.recv()
        if time.monotonic() - start > 1:
            values.append(latency_ms(frame.to_ndarray(format="rgb24")))
    await pc.close()
    return values


# --- the run ---------------------------------------------------------------------------------------


def _feed(publisher: Any, stop: threading.Event) -> None:
    start, n = time.monotonic(), 0
    background = np.zeros((H, W, 3), np.uint8)
    background[BLOCK + 4 :, :, 1] = 96
    while not stop.is_set() and not publisher.closed:
        frame = background.copy()
        frame[BLOCK + 4 :, (n * 4) % W] = 255  # some motion
        stamp(frame, int(time.time() * 1000) & (2**BITS - 1))
        publisher.send(frame)
        n += 1
        stop.wait(max(0.0, start + n / FPS - time.monotonic()))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    import streamd
    from benchmarks.server_process import free_even_udp_pair, free_port

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args(argv)
    machine = report.machine()
    results: dict[str, Any] = {}
    with streamd.serve_in_thread(
        host="127.0.0.1",
        rtsp_port=free_port(),
        rtp_port=free_even_udp_pair(),
        http_port=free_port(),
        http=True,
    ) as server:
        publisher = server.publish(PATH, W, H, FPS)
        stop = threading.Event()
        feeder = threading.Thread(target=_feed, args=(publisher, stop), daemon=True)
        feeder.start()
        time.sleep(1)
        http = f"http://127.0.0.1:{server.server.http_port}"
        urls = {"whep": f"{http}/whep/{PATH}", "rtsp": server.url(PATH), "mp4": f"{http}/mp4/{PATH}"}
        ctx = multiprocessing.get_context("spawn")
        running = []
        for kind, url in urls.items():
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_reader, args=(child, kind, url, args.seconds))
            proc.start()
            running.append((kind, parent, proc))
        for kind, pipe, proc in running:
            results[kind] = pipe.recv()
            proc.join(30)
        stop.set()
        feeder.join()
    rows = {}
    for kind, result in results.items():
        values = result.get("latencies") or []
        if values:
            rows[kind] = {
                "frames": len(values),
                "p50_ms": statistics.median(values),
                "p99_ms": percentile(values, 0.99),
                "min_ms": min(values),
            }
        else:
            rows[kind] = {"error": result.get("error", "no frames")}
    out = report.results_dir()
    (out / "webrtc_latency.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))
    lines = [
        "# Glass-to-glass latency: WHEP vs RTSP vs /mp4",
        "",
        report.machine_line(machine),
        "",
        f"{W}x{H} at {FPS} fps from the numpy API (libx264 zero latency), loopback, {args.seconds:g} s; "
        "readers: aiortc (WHEP), PyAV/FFmpeg over RTSP/UDP with nobuffer/low_delay, PyAV on /mp4.",
        "",
        "| protocol | frames | p50 ms | p99 ms | min ms |",
        "|---|---|---|---|---|",
    ]
    for kind, row in rows.items():
        if "error" in row:
            lines.append(f"| {kind} | - | {row['error']} | | |")
        else:
            p50, p99, low = row["p50_ms"], row["p99_ms"], row["min_ms"]
            lines.append(f"| {kind} | {row['frames']} | {p50:.0f} | {p99:.0f} | {low:.0f} |")
    (out / "webrtc_latency.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
