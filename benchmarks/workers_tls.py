"""What forwarding a TLS client to another worker costs, measured.

With ``--workers 2`` a TLS connection whose session is on the other worker stays in the worker that
terminated TLS, which pipes the decrypted bytes to the owner (``streamd/workers/pipe.py``). This
plays the same clients (RTSP over TCP interleaved inside TLS, a 640x360 clip) first directly on
worker 0, then terminated by worker 1 and forwarded to worker 0, and reports each worker's CPU per
megabyte delivered.

    python -m benchmarks.workers_tls --clients 16
"""

from __future__ import annotations

import argparse
import json
import os
import re
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks import report, server_process
from benchmarks.workers import LIMITS, TreeServer, _free_udp_run
from tests.integration.workers_pin import exchange
from tests.integration.workers_tls_pin import tls_on
from tests.tlscerts import make_pair

CLIP = "clip.mp4"


def cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(media: Path, log_path: Path, tls: Path) -> tuple[TreeServer, int]:
    pair = make_pair(tls)
    port, rtsps, rtp = server_process.free_port(), server_process.free_port(), _free_udp_run(4)
    config = log_path.with_suffix(".toml")
    config.write_text(LIMITS)
    args = [
        sys.executable, "-m", "streamd.cli", "serve", "--host", "127.0.0.1", "--rtsp-port", str(port),
        "--rtp-port", str(rtp), "--no-http", "--media", str(media), "--no-test-stream", "--workers", "2",
        "--config", str(config), "--rtsps-port", str(rtsps), "--tls-cert", str(pair.cert),
        "--tls-key", str(pair.key),
    ]  # fmt: skip
    server = TreeServer(server_process._spawn(args, log_path), port, 0, rtp_port=rtp, workers=2)
    deadline = time.monotonic() + 120
    while "all 2 workers ready" not in log_path.read_text(errors="replace"):
        if server.process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"streamd --workers 2 did not start; see {log_path}")
        time.sleep(0.2)
    return server, rtsps


def play(sock: ssl.SSLSocket, url: str, received: list[int], index: int) -> None:
    """Play the clip over TCP interleaved on ``sock`` and count what arrives until it goes quiet."""
    exchange(sock, f"DESCRIBE {url} RTSP/1.0\nCSeq: 10\n")
    tcp = "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\n"
    _, headers, _ = exchange(sock, f"SETUP {url}/trackID=0 RTSP/1.0\nCSeq: 11\n{tcp}")
    session = headers["session"].split(";")[0]
    sock.sendall(f"PLAY {url} RTSP/1.0\r\nCSeq: 12\r\nSession: {session}\r\n\r\n".encode())
    sock.settimeout(3)  # the clip has ended (the server keeps the connection)
    try:
        while chunk := sock.recv(65536):
            received[index] += len(chunk)
    except (TimeoutError, OSError):
        pass


def measure(socks: list[ssl.SSLSocket], url: str, pids: dict[int, int]) -> dict[str, Any]:
    received = [0] * len(socks)
    before, t0 = {w: cpu(p) for w, p in pids.items()}, time.monotonic()
    threads = [threading.Thread(target=play, args=(s, url, received, i)) for i, s in enumerate(socks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    used = {w: cpu(p) - before[w] for w, p in pids.items()}
    for sock in socks:
        sock.close()
    megabytes = sum(received) / 1e6
    return {
        "megabytes": round(megabytes, 2),
        "seconds": round(time.monotonic() - t0, 1),
        "cpu_seconds": {w: round(u, 2) for w, u in used.items()},
        "cpu_ms_per_megabyte": {w: round(1000 * u / megabytes, 1) for w, u in used.items()},
    }


def forwarded(rtsps: int, rtp: int, url: str) -> ssl.SSLSocket:
    """A TLS connection on worker 1 that a session on worker 0 has made forwarded."""
    with tls_on(rtsps, rtp, 0) as first:
        exchange(first, f"DESCRIBE {url} RTSP/1.0\nCSeq: 1\n")
        udp = "Transport: RTP/AVP;unicast;client_port=9-10\n"
        _, headers, _ = exchange(first, f"SETUP {url}/trackID=0 RTSP/1.0\nCSeq: 2\n{udp}")
    session = headers["session"].split(";")[0]
    second = tls_on(rtsps, rtp, 1)
    status, _, _ = exchange(second, f"GET_PARAMETER {url} RTSP/1.0\nCSeq: 3\nSession: {session}\n")
    assert status == 200, status
    return second


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.workers_tls", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    out = args.out or report.results_dir()
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        from media.testsrc import write_synthetic_media

        media = Path(tmp) / "media"
        media.mkdir()
        write_synthetic_media(media / CLIP, seconds=20, size=(640, 360), fps=25, gop=25, bframes=False)
        write_synthetic_media(
            media / "bframes.mp4", seconds=1, size=(160, 120), fps=25, gop=25, bframes=False
        )
        log = out / "workers-tls.log"
        server, rtsps = start(media, log, Path(tmp) / "tls")
        pids = {int(i): int(p) for i, p in re.findall(r"worker (\d+) \(pid (\d+)\) ready", log.read_text())}
        url = f"rtsps://127.0.0.1:{rtsps}/{CLIP}"
        try:
            direct = [tls_on(rtsps, server.rtp_port, 0) for _ in range(args.clients)]
            results["direct on worker 0"] = measure(direct, url, pids)
            piped = [forwarded(rtsps, server.rtp_port, url) for _ in range(args.clients)]
            results["TLS on worker 1, forwarded to worker 0"] = measure(piped, url, pids)
        finally:
            server.stop()
    rep = {
        "benchmark": "workers_tls",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": report.machine(),
        "clients": args.clients,
        "results": results,
    }
    (out / "workers-tls.json").write_text(json.dumps(rep, indent=1))
    lines = [
        f"# TLS clients forwarded between workers ({rep['date']})",
        "",
        report.machine_line(rep["machine"]),
        "",
    ]
    lines += ["| case | MB | worker 0 CPU ms/MB | worker 1 CPU ms/MB |", "|---|---|---|---|"]
    for case, r in results.items():
        c = r["cpu_ms_per_megabyte"]
        lines.append(f"| {case} | {r['megabytes']} | {c[0]} | {c[1]} |")
    text = "\n".join(lines) + "\n"
    (out / "workers-tls.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
