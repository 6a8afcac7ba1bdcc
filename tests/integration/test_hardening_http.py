"""Issue 12, item 1: HTTP clients that never read must not stop on-demand RTSP playback.

Attack: open ``/mp4`` responses with a tiny receive buffer and never read them. Before the fix,
each one held a thread of the loop's shared default pool for ``STALL_SECONDS`` (30 s), so eight
of them made every DESCRIBE (probe) and PLAY (file reads) wait behind them.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import mediagen
from tests.integration.conftest import ServerProcess, need, per_process_only, start_server, stop_all

STALLED = 8
PLAY_SECONDS = 2  # bframes.mp4
SLACK_SECONDS = 15  # far more than ffmpeg's start-up on a loaded machine; less than STALL_SECONDS


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("ffmpeg")
    root = tmp_path_factory.mktemp("hardening-media")
    mediagen.make_h264_aac_mp4(root / "bframes.mp4", seconds=PLAY_SECONDS, bframes=True)
    mediagen.make_h264_aac_mp4(root / "small.mp4", seconds=2, bframes=False, size=(160, 120))
    big = ["-f", "lavfi", "-i", "testsrc2=s=640x360:r=25:d=30", "-c:v", "libx264", "-preset", "ultrafast"]
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            *big,
            "-qp",
            "0",
            "-g",
            "25",
            "-y",
            str(root / "big.mp4"),
        ],
        check=True,
        timeout=120,
    )
    return root


def _serve(folder: Path, tmp: Path, settings: str) -> ServerProcess:
    config = tmp / "streamd.toml"
    config.write_text(settings)
    return start_server(folder, tmp, "--config", str(config))


def _stalled_request(
    server: ServerProcess, path: str, source: str = "127.0.0.1"
) -> tuple[socket.socket, bytes]:
    """A GET whose client reads the status line and then nothing: its window closes at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.bind((source, 0))
    sock.settimeout(30)
    sock.connect(("127.0.0.1", server.http_port))
    sock.sendall(f"GET /{path} HTTP/1.1\r\nHost: 127.0.0.1:{server.http_port}\r\n\r\n".encode())
    return sock, sock.recv(12)


def _play(server: ServerProcess, path: str) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    begin = time.monotonic()
    result = subprocess.run(
        [
            *("ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-i"),
            server.url(path),
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        timeout=120,
    )
    return time.monotonic() - begin, result


@pytest.fixture
def socks() -> Iterator[list[socket.socket]]:
    held: list[socket.socket] = []
    yield held
    for sock in held:
        sock.close()


# not serial: the failure it catches is a 30 s stall (STALL_SECONDS), which no load imitates within
# the 15 s of slack, so it runs beside other tests
def test_non_reading_mp4_clients_leave_rtsp_playback_alone(
    folder: Path, tmp_path: Path, socks: list[socket.socket]
) -> None:
    # every stalled request is admitted (the worst case: per-client limits do not save us here)
    server = _serve(folder, tmp_path, f"max_remuxes = {STALLED}\nmax_remuxes_per_client = {STALLED}\n")
    try:
        for _ in range(STALLED):
            sock, status = _stalled_request(server, "mp4/big.mp4")
            socks.append(sock)
            assert status == b"HTTP/1.1 200", status
        elapsed, result = _play(server, "bframes.mp4")
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        assert elapsed < PLAY_SECONDS + SLACK_SECONDS, f"ffmpeg took {elapsed:.1f} s for {PLAY_SECONDS} s"
    finally:
        for sock in socks:
            sock.close()
        stop_all(server)


@per_process_only  # the HTTP side's limits count per worker (docs/scaling.md)
def test_remuxes_are_bounded_per_client_and_in_total(
    folder: Path, tmp_path: Path, socks: list[socket.socket]
) -> None:
    server = _serve(folder, tmp_path, "max_remuxes = 3\nmax_remuxes_per_client = 2\n")
    try:
        for _ in range(2):
            sock, status = _stalled_request(server, "mp4/big.mp4", source="127.0.0.2")
            socks.append(sock)
            assert status == b"HTTP/1.1 200"
        sock, status = _stalled_request(server, "mp4/big.mp4", source="127.0.0.2")
        socks.append(sock)
        assert status == b"HTTP/1.1 503"
        sock.settimeout(10)
        assert b"at once from 127.0.0.2" in sock.recv(4096)
        # another address still gets the whole file; then the total is reached for everyone
        with urllib.request.urlopen(server.http("mp4/small.mp4"), timeout=60) as response:
            assert response.status == 200 and len(response.read()) > 10_000  # to the chunked end
        sock, status = _stalled_request(server, "mp4/big.mp4", source="127.0.0.3")
        socks.append(sock)
        assert status == b"HTTP/1.1 200"
        sock, status = _stalled_request(server, "mp4/big.mp4", source="127.0.0.4")
        socks.append(sock)
        assert status == b"HTTP/1.1 503"
    finally:
        for sock in socks:
            sock.close()
        stop_all(server)


def _publish_opus(server: ServerProcess, path: str) -> socket.socket:
    """A publisher that announces an Opus track and records (it sends nothing: online is enough)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    url = server.url(path)
    sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\nm=audio 0 RTP/AVP 96\r\n"
    sdp += "a=rtpmap:96 opus/48000/2\r\na=control:trackID=0\r\n"
    record = "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record"
    session = ""
    for cseq, (line, headers, body) in enumerate(
        [
            (f"ANNOUNCE {url}", f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n", sdp),
            (f"SETUP {url}/trackID=0", f"Transport: {record}\r\n", ""),
            (f"RECORD {url}", "", ""),
        ],
        start=1,
    ):
        if session:
            headers += f"Session: {session}\r\n"
        sock.sendall(f"{line} RTSP/1.0\r\nCSeq: {cseq}\r\n{headers}\r\n{body}".encode())
        reply = sock.recv(4096).decode()
        assert reply.startswith("RTSP/1.0 200"), reply
        found = [h for h in reply.split("\r\n") if h.lower().startswith("session:")]
        session = found[0].split(":", 1)[1].split(";")[0].strip() if found else session
    return sock


@per_process_only
def test_live_mp4_views_are_bounded_per_client(
    folder: Path, tmp_path: Path, socks: list[socket.socket]
) -> None:
    server = _serve(folder, tmp_path, "max_remuxes_per_client = 2\n")
    try:
        socks.append(_publish_opus(server, "live/radio"))
        for _ in range(2):
            sock, status = _stalled_request(server, "mp4/live/radio", source="127.0.0.2")
            socks.append(sock)
            assert status == b"HTTP/1.1 200"
        sock, status = _stalled_request(server, "mp4/live/radio", source="127.0.0.2")
        socks.append(sock)
        assert status == b"HTTP/1.1 503"
        sock, status = _stalled_request(server, "mp4/live/radio", source="127.0.0.3")
        socks.append(sock)
        assert status == b"HTTP/1.1 200"
    finally:
        for sock in socks:
            sock.close()
        stop_all(server)
