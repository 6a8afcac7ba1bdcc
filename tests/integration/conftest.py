"""Fixtures that run the real server as a user would: a subprocess on free ports."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
BFRAMES_SECONDS = 2  # media_dir's bframes.mp4, which many tests play whole: short keeps them quick


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_udp_pair(pairs: int = 1) -> int:
    """An even port whose successor is free too (RTP and RTCP); ``pairs`` such pairs in a row."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
        if port % 2 or port > 65000 - 2 * pairs:
            continue
        try:
            with contextlib.ExitStack() as held:
                for n in range(2 * pairs):
                    held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)).bind(
                        ("127.0.0.1", port + n)
                    )
        except OSError:
            continue
        return port
    raise RuntimeError("no free UDP port pair")


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int
    rtp_port: int
    log_path: Path
    media: Path
    http_port: int = 0

    def http(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.http_port}/{path}"

    def url(self, path: str) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{path}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def api(self, what: str) -> dict:
        """``GET /api/v1/<what>`` (the server runs its HTTP side)."""
        with urllib.request.urlopen(self.http(f"api/v1/{what}"), timeout=10) as response:
            return json.loads(response.read())

    def session_ids(self) -> set[str]:
        """The RTSP sessions the server holds now."""
        return {s["id"] for s in self.api("sessions")["sessions"]}

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


# Top-level config keys for tests of session timeouts: a 2 s timeout (the floor lowered for it)
# and a reaper that notices within a fifth of a second, so a timeout test waits ~2 s, not 5-7.
SHORT_TIMEOUT_TOML = "min_session_timeout = 1\nsession_timeout = 2\nreap_interval = 0.2\n"


def start_server(
    media: Path, tmp: Path, *extra: str, cache_dir: Path | None = None, prefix: Sequence[str] = ()
) -> ServerProcess:
    """``prefix`` goes before the command, e.g. ``ip netns exec <ns>`` (the caller must then be in
    that namespace too, for the free-port choice and the readiness check)."""
    workers = os.environ.get("STREAMD_TEST_WORKERS", "")  # the suite against `--workers N` (issue 18)
    if workers and "--workers" not in extra:
        extra = (*extra, "--workers", workers)
    pairs = int(extra[extra.index("--workers") + 1]) if "--workers" in extra else 1  # one per worker
    port, rtp_port = free_tcp_port(), free_udp_pair(pairs)
    log_path = tmp / f"server-{port}.log"
    args = [
        *prefix,
        sys.executable,
        "-m",
        "streamd.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--rtsp-port",
        str(port),
        "--rtp-port",
        str(rtp_port),
        "--media",
        str(media),
    ]
    args += ["--cache-dir", str(cache_dir)] if cache_dir else ["--no-test-stream"]
    args += list(extra)
    http_port = 0
    if "--no-http" not in extra:
        if "--http-port" in extra:
            http_port = int(extra[extra.index("--http-port") + 1])
        else:
            http_port = free_tcp_port()
            args += ["--http-port", str(http_port)]
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT)
    server = ServerProcess(process, port, rtp_port, log_path, media, http_port)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                pass
            if http_port:  # the HTTP side starts right after the RTSP listener
                with socket.create_connection(("127.0.0.1", http_port), timeout=0.2):
                    pass
            return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"server did not start:\n{server.log()}")


def stop_all(*procs: ServerProcess) -> None:
    """Stop every server, then check their logs: a failed check leaks no server process."""
    for proc in procs:
        proc.stop()
    for proc in procs:
        assert "Traceback" not in proc.log(), proc.log()


@pytest.fixture(scope="session")
def test_stream_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in test stream's cache, shared by all tests (made once per run)."""
    cache = Path(os.environ.get("STREAMD_TEST_CACHE", tmp_path_factory.mktemp("cache")))
    from media.testsrc import ensure_test_stream

    ensure_test_stream(cache)
    return cache


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Test media, generated once per run (small, a few seconds each)."""
    from tests import mediagen

    root = tmp_path_factory.mktemp("media")
    mediagen.make_h264_aac_mp4(root / "bframes.mp4", seconds=BFRAMES_SECONDS, bframes=True)
    mediagen.make_h264_aac_mp4(root / "ten.mp4", seconds=10, bframes=False, size=(160, 120))
    (root / "sub dir").mkdir()
    mediagen.make_moov_at_end_mp4(root / "sub dir" / "moov end.mp4", seconds=2)
    mediagen.make_annexb_h264(root / "raw.h264", seconds=2)
    mediagen.make_adts_aac(root / "raw.aac", seconds=2)
    mediagen.make_truncated(root / "bframes.mp4", root / "truncated.mp4", 0.5)
    (root / "notes.txt").write_text("not a media file\n")
    if shutil.which("ffmpeg"):
        lavfi = ["-f", "lavfi", "-i", "testsrc=d=1:s=160x120:r=10", "-f", "lavfi", "-i", "sine=d=2"]
        other_codecs = (
            ("mpeg4-aac.mp4", ["-c:v", "mpeg4", "-c:a", "aac"]),
            ("tone.flac", ["-vn", "-c:a", "flac"]),
            ("tone.wav", ["-vn", "-c:a", "pcm_s16le", "-t", "2"]),
        )
        for name, codecs in other_codecs:
            subprocess.run(
                ["ffmpeg", "-nostdin", "-loglevel", "error", *lavfi, *codecs, "-y", str(root / name)],
                check=True,
                timeout=60,
            )
    return root


@pytest.fixture(scope="module")
def server(
    media_dir: Path, test_stream_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    proc = start_server(media_dir, tmp_path_factory.mktemp("server"), cache_dir=test_stream_cache)
    yield proc
    code = proc.stop()
    log = proc.log()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(proc.log_path, ARTIFACTS / proc.log_path.name)
    assert "Traceback" not in log, log
    assert code == 0, log


def need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (scripts/test installs it)")


@pytest.fixture(scope="session", autouse=True)
def _codec_matrix() -> Iterator[None]:
    yield
    from tests.integration import codec_matrix

    codec_matrix.flush()
