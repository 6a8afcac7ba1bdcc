"""Load benchmark: N concurrent UDP sessions of one file.

Measures what a capacity plan needs: server CPU per stream, packet loss, and how late packets
leave compared with their schedule (arrival time against RTP timestamp, relative to the
earliest packet of the stream; the clip has no B-frames, so RTP time order is send order).

    python -m benchmarks.load --sessions 1 10 50 100 --seconds 15

Writes ``benchmarks/results/load-<timestamp>.json`` and ``.md`` with the machine description.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import struct
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import server_process
from media.testsrc import write_synthetic_media
from streamd.rtsp.message import Request, Response
from streamd.rtsp.parser import MessageParser

RESULTS = Path(__file__).parent / "results"
CLOCKS = {0: 90000, 1: 48000}


@dataclass
class TrackReceiver(asyncio.DatagramProtocol):
    clock: int
    packets: list[tuple[float, int, int]] = field(default_factory=list)  # arrival, seq, ts

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if len(data) >= 12 and data[0] >> 6 == 2:
            seq, ts = struct.unpack_from("!HI", data, 2)
            self.packets.append((time.monotonic(), seq, ts))


class Control:
    """Just enough RTSP to SETUP and PLAY: a benchmark must not depend on a player's start-up."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.parser, self.cseq = reader, writer, MessageParser(), 0
        self.session: str | None = None

    async def request(self, method: str, url: str, **headers: str) -> Response:
        self.cseq += 1
        request = Request(method, url)
        request.headers["CSeq"] = str(self.cseq)
        if self.session:
            request.headers["Session"] = self.session
        for k, v in headers.items():
            request.headers[k.replace("_", "-")] = v
        self.writer.write(bytes(request))
        while True:
            for event in self.parser.feed(await self.reader.read(65536)):
                if isinstance(event, Response):
                    if "Session" in event.headers:
                        self.session = event.headers["Session"].split(";")[0]
                    return event


Opened = tuple[Control, list[TrackReceiver], list[asyncio.BaseTransport]]


async def open_session(port: int, path: str) -> Opened:
    loop = asyncio.get_running_loop()
    control = Control(*await asyncio.open_connection("127.0.0.1", port))
    url = f"rtsp://127.0.0.1:{port}/{path}"
    await control.request("DESCRIBE", url)
    receivers, transports = [], []
    for track in (0, 1):
        receiver = TrackReceiver(CLOCKS[track])
        transport, _ = await loop.create_datagram_endpoint(lambda r=receiver: r, local_addr=("127.0.0.1", 0))
        rtcp, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        rtp_port, rtcp_port = transport.get_extra_info("sockname")[1], rtcp.get_extra_info("sockname")[1]
        response = await control.request(
            "SETUP", f"{url}/trackID={track}", Transport=f"RTP/AVP;unicast;client_port={rtp_port}-{rtcp_port}"
        )
        assert response.status == 200, response
        receivers.append(receiver)
        transports += [transport, rtcp]
    return control, receivers, transports


def summarize(receivers: list[TrackReceiver]) -> dict[str, float]:
    late_ms: list[float] = []
    expected = received = 0
    for r in receivers:
        if len(r.packets) < 2:
            continue
        first_arrival, first_seq, first_ts = r.packets[0]
        seq_span = 0
        offsets = []
        for arrival, seq, ts in r.packets:
            seq_span = max(seq_span, (seq - first_seq) % 65536)
            offsets.append((arrival - first_arrival) - ((ts - first_ts) % 2**32) / r.clock)
        expected += seq_span + 1
        received += len(r.packets)
        base = min(offsets)
        late_ms += [1000 * (o - base) for o in offsets]
    late_ms.sort()
    return {
        "packets": received,
        "loss_percent": 100 * max(0, expected - received) / expected if expected else 0.0,
        "late_p50_ms": statistics.median(late_ms) if late_ms else 0.0,
        "late_p99_ms": late_ms[int(0.99 * (len(late_ms) - 1))] if late_ms else 0.0,
        "late_max_ms": late_ms[-1] if late_ms else 0.0,
    }


async def run_level(server: server_process.Server, sessions: int, seconds: float) -> dict[str, float]:
    opened = [await open_session(server.port, "clip.mp4") for _ in range(sessions)]
    cpu0, wall0 = server.cpu_seconds(), time.monotonic()
    for control, _, _ in opened:
        await control.request("PLAY", f"rtsp://127.0.0.1:{server.port}/clip.mp4")
    await asyncio.sleep(seconds)
    cpu = server.cpu_seconds() - cpu0
    wall = time.monotonic() - wall0
    receivers = [r for _, rs, _ in opened for r in rs]
    result = {
        "sessions": sessions,
        "cpu_percent": 100 * cpu / wall,
        "cpu_percent_per_stream": 100 * cpu / wall / sessions,
    }
    result |= summarize(receivers)
    for control, _, transports in opened:
        await control.request("TEARDOWN", f"rtsp://127.0.0.1:{server.port}/clip.mp4")
        control.writer.close()
        for t in transports:
            t.close()
    await asyncio.sleep(1)
    return result


def machine() -> dict[str, str | int]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    import os

    return {
        "cpu": cpu,
        "cores": os.cpu_count() or 0,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


async def main_async(levels: list[int], seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        media = Path(tmp)
        duration = seconds + 5
        write_synthetic_media(
            media / "clip.mp4", seconds=duration, size=(640, 360), fps=25, gop=25, bframes=False
        )
        server = server_process.start(media, media / "server.log")
        try:
            results = [await run_level(server, n, seconds) for n in levels]
        finally:
            server.stop()
    return {"benchmark": "load-udp", "clip": "640x360 25 fps H.264 + AAC 48 kHz", "seconds": seconds,
            "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"), "results": results}  # fmt: skip


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"# Load: concurrent UDP sessions ({report['date']})",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, {m['system']}. "
        f"Clip: {report['clip']}; each level measured over {report['seconds']} s.",
        "",
        "| sessions | server CPU % (one core = 100) | CPU % per stream | loss % "
        "| late p50 ms | late p99 ms | late max ms |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['sessions']} | {r['cpu_percent']:.1f} | {r['cpu_percent_per_stream']:.2f} | "
            f"{r['loss_percent']:.3f} | {r['late_p50_ms']:.1f} | {r['late_p99_ms']:.1f} "
            f"| {r['late_max_ms']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 10, 50, 100])
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()
    report = asyncio.run(main_async(args.sessions, args.seconds))
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"load-{time.strftime('%Y%m%d-%H%M%S')}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2))
    text = markdown(report)
    stem.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
