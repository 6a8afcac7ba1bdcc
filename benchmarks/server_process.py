"""Run the streamd server as a separate process, as a user would, for benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_even_udp_pair() -> int:
    for _ in range(200):
        port = free_port(socket.SOCK_DGRAM)
        if port % 2 == 0 and port < 65000:
            try:
                with (
                    socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a,
                    socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b,
                ):
                    a.bind(("127.0.0.1", port))
                    b.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue
    raise RuntimeError("no free UDP port pair")


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    http_port: int = 0
    name: str = "streamd"
    path: str = "clip.mp4"  # where the clip is served
    host: str = "127.0.0.1"  # where it listens (a namespace's address behind a kernel link)
    tls_port: int = 0  # RTSPS, when started with a certificate

    def rss_bytes(self) -> int:
        """Resident memory of the server process now."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start(
    media: Path,
    log_path: Path,
    *extra: str,
    host: str = "127.0.0.1",
    prefix: Sequence[str] = (),
    tls: tuple[Path, Path] | None = None,
) -> Server:
    """``prefix`` (e.g. ``ip netns exec NAME``) goes before the command; ``host`` is where it listens;
    ``tls`` (certificate, key): RTSPS too, on ``Server.tls_port``."""
    port, http_port = free_port(), free_port()
    tls_port = free_port() if tls else 0
    if tls:
        extra = (*extra, "--tls-cert", str(tls[0]), "--tls-key", str(tls[1]), "--rtsps-port", str(tls_port))
    args = [
        *prefix, sys.executable, "-m", "streamd.cli", "serve", "--host", host, "--rtsp-port", str(port),
        "--rtp-port", str(free_even_udp_pair()), "--http-port", str(http_port), "--media", str(media),
        "--no-test-stream", "--log-level", "warning", *extra,
    ]  # fmt: skip
    env = (
        {**os.environ, "STREAMD_UDP_GSO": "0"} if prefix else None
    )  # qdiscs count datagrams, not GSO batches
    server = Server(_spawn(args, log_path, env), port, http_port, host=host, tls_port=tls_port)
    return wait_listening(server, log_path)


def _spawn(args: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)


def wait_listening(server: Server, log_path: Path) -> Server:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        try:
            with socket.create_connection((server.host, server.port), timeout=0.2):
                return server
        except OSError:
            time.sleep(0.1)
    server.process.kill()
    raise RuntimeError(f"{server.name} did not start; see {log_path}")


PEER_LAUNCHER = Path(__file__).parent / "peers" / "gst_rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, where python3-gi and GstRtspServer live


def peer_available() -> str | None:
    """None when gst-rtsp-server can be started, else why not."""
    check = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    try:
        done = subprocess.run([SYSTEM_PYTHON, "-c", check], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode:
        return "gst-rtsp-server is not installed (apt-get install gir1.2-gst-rtsp-server-1.0 python3-gi)"
    return None


def start_peer(
    clip: Path,
    log_path: Path,
    *,
    host: str = "127.0.0.1",
    prefix: Sequence[str] = (),
    tls: tuple[Path, Path] | None = None,
) -> Server:
    """gst-rtsp-server serving ``clip`` with passthrough payloaders at rtsp://HOST:PORT/clip;
    with ``tls`` (certificate, key) it serves rtsps:// on that port instead."""
    port = free_port()
    args = [
        *prefix,
        SYSTEM_PYTHON,
        str(PEER_LAUNCHER),
        "--port",
        str(port),
        "--host",
        host,
        "--file",
        str(clip),
    ]
    if tls:
        args += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    peer = Server(
        _spawn(args, log_path),
        port,
        name="gst-rtsp-server",
        path="clip",
        host=host,
        tls_port=port if tls else 0,
    )
    return wait_listening(peer, log_path)
