"""Fixtures that run the real server as a user would: `streamd serve` in a process of its own on free
ports (forked from a process that already imported streamd: tests/server_forks.py)."""

from __future__ import annotations

import itertools
import json
import os
import random
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

from tests import server_forks
from tests.server_forks import ForkedServer
from tests.shared_files import made_once
from tests.tlscerts import CertPair

# The login back-off, the HTTP side's limits and nonce replays count per worker process
# (docs/scaling.md, "Where it stops"): tests of those figures hold for one process only.
per_process_only = pytest.mark.skipif(
    bool(os.environ.get("STREAMD_TEST_WORKERS")),
    reason="with --workers, login back-off, HTTP limits and nonce replays are per worker (docs/scaling.md)",
)

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
BFRAMES_SECONDS = 2  # media_dir's bframes.mp4, which many tests play whole: short keeps them quick


# Ports for servers come from below the kernel's ephemeral range, where no client's outgoing
# connection or kernel-chosen port lands, and each pytest-xdist worker takes them from its own
# slice, so two workers never pick the same port; start_server still retries if one was taken.
_PORT_LOW, _PORT_HIGH, _SLICES = 12000, 32000, 9  # slice 0: a run without workers; gwN: N + 1


def _port_slice() -> range:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            high = min(_PORT_HIGH, int(f.read().split()[0]))
    except (OSError, ValueError, IndexError):
        high = _PORT_HIGH
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker[2:]) % (_SLICES - 1) + 1 if worker[2:].isdigit() else 0
    size = (high - _PORT_LOW) // _SLICES
    return range(_PORT_LOW + index * size, _PORT_LOW + (index + 1) * size)


_ports = _port_slice()
_cursor = itertools.count(random.Random(os.getpid()).randrange(len(_ports)))


def _candidates() -> Iterator[int]:
    """Every port of this process's slice once, going on from where the last call stopped."""
    for _ in range(len(_ports)):
        yield _ports[next(_cursor) % len(_ports)]


def _bindable(kind: socket.SocketKind, *ports: int) -> bool:
    sockets = [socket.socket(socket.AF_INET, kind) for _ in ports]
    try:
        for sock, port in zip(sockets, ports, strict=True):
            sock.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        for sock in sockets:
            sock.close()


def free_tcp_port() -> int:
    for port in _candidates():
        if _bindable(socket.SOCK_STREAM, port):
            return port
    raise RuntimeError("no free TCP port")


def free_udp_pair(pairs: int = 1) -> int:
    """An even port whose successors are free too (RTP and RTCP); ``pairs`` such pairs in a row."""
    span = 2 * pairs
    for port in _candidates():
        if (
            port % 2 == 0
            and port + span <= _ports.stop
            and _bindable(socket.SOCK_DGRAM, *range(port, port + span))
        ):
            return port
    raise RuntimeError("no free UDP port pair")


def udp_pair() -> tuple[socket.socket, socket.socket]:
    """A test client's RTP and RTCP sockets, bound to a free pair of this worker's ports (not the
    kernel's choice, which may be a port another test's server is still sending to)."""
    for _ in range(20):
        port = free_udp_pair()
        rtp, rtcp = (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
        )
        try:
            rtp.bind(("127.0.0.1", port))
            rtcp.bind(("127.0.0.1", port + 1))
            return rtp, rtcp
        except OSError:
            rtp.close()
            rtcp.close()
    raise RuntimeError("no free UDP port pair")


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes] | ForkedServer
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
        with urllib.request.urlopen(self.http(f"api/v1/{what}"), timeout=30) as response:
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
    for attempt in range(3):
        try:
            return _start_server(media, tmp, *extra, cache_dir=cache_dir, prefix=prefix)
        except PortTaken:  # another process bound a port between our check and the server's bind
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


class PortTaken(RuntimeError):
    pass


def _start_server(
    media: Path, tmp: Path, *extra: str, cache_dir: Path | None, prefix: Sequence[str]
) -> ServerProcess:
    workers = os.environ.get("STREAMD_TEST_WORKERS", "")  # the suite against `--workers N` (issue 18)
    if workers and "--workers" not in extra:
        extra = (*extra, "--workers", workers)
    pairs = int(extra[extra.index("--workers") + 1]) if "--workers" in extra else 1  # one per worker
    if "--tls-cert" in extra:  # TLS listeners' default ports (8322, 8443) would be every server's
        if "--rtsps-port" not in extra:
            extra = (*extra, "--rtsps-port", str(free_tcp_port()))
        if "--https-port" not in extra and "--no-http" not in extra:
            extra = (*extra, "--https-port", str(free_tcp_port()))
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
    process: subprocess.Popen[bytes] | ForkedServer
    if not prefix and server_forks.enabled():  # the same command, forked from a preloaded process
        process = server_forks.spawn(args[3:], log_path, ROOT)
    else:
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT)
    server = ServerProcess(process, port, rtp_port, log_path, media, http_port)
    tls_ports = [
        int(extra[extra.index(flag) + 1])
        for flag in ("--rtsps-port", "--https-port")
        if "--tls-cert" in extra and flag in extra
    ]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            taken = ("Address already in use", "could not bind to local_addr")  # (uvloop's words)
            failure = PortTaken if any(words in server.log() for words in taken) else RuntimeError
            raise failure(f"server exited early:\n{server.log()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                pass
            for listening in [p for p in (http_port, *tls_ports) if p]:  # started after RTSP's
                with socket.create_connection(("127.0.0.1", listening), timeout=0.2):
                    pass
            if pairs > 1 and f"all {pairs} workers ready" not in server.log():
                # one worker answering is not enough: another may yet fail to bind its UDP pair
                # (taken meanwhile), and then the parent stops them all
                raise OSError("not every worker is ready")
            return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"server did not start:\n{server.log()}")


def start_live_only(tmp: Path, config: str) -> ServerProcess:
    """A server with no files (only live paths) and the TOML ``config``, in ``tmp``."""
    media = tmp / "media"
    media.mkdir()
    (tmp / "streamd.toml").write_text(config)
    return start_server(media, tmp, "--config", str(tmp / "streamd.toml"))


def stop_all(*procs: ServerProcess) -> None:
    """Stop every server, then check their logs: a failed check leaks no server process."""
    for proc in procs:
        proc.stop()
    for proc in procs:
        assert "Traceback" not in proc.log(), proc.log()


@pytest.fixture(scope="session")
def test_stream_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in test stream's cache, shared by all tests (made once per run)."""
    from media.testsrc import ensure_test_stream

    if "STREAMD_TEST_CACHE" in os.environ:
        cache = Path(os.environ["STREAMD_TEST_CACHE"])
        ensure_test_stream(cache)
        return cache
    return made_once(tmp_path_factory, "testsrc", ensure_test_stream)


@pytest.fixture(scope="session")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> CertPair:
    """A self-signed certificate and key for 127.0.0.1/localhost (RTSPS, HTTPS tests)."""
    from tests.tlscerts import make_pair

    return make_pair(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Test media, generated once per run (small, a few seconds each)."""
    return made_once(tmp_path_factory, "media", _make_media)


def _make_media(root: Path) -> None:
    from tests import mediagen

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
