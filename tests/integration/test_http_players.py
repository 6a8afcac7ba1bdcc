"""Real clients of the HTTP side: ffmpeg reads the fMP4 fallback and the RTSP-over-HTTP tunnel
(bit-exact), and headless Chromium opens the index page, follows a watch link and plays the video."""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.chromium import CHROMIUM, PLAYED_SECONDS, chromium_tab
from tests.integration.conftest import ARTIFACTS, ServerProcess, need, start_server
from tests.integration.source import (
    received_audio_frames,
    received_video_nals,
    source_audio_frames,
    source_video_nals,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def web(
    media_dir: Path, test_stream_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    proc = start_server(media_dir, tmp_path_factory.mktemp("web"), cache_dir=test_stream_cache)
    yield proc
    code = proc.stop()
    log = proc.log()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(proc.log_path, ARTIFACTS / f"http-{proc.log_path.name}")
    assert "Traceback" not in log, log
    assert code == 0, log


def _ffmpeg(args: list[str], out: Path) -> tuple[Path, Path]:
    need("ffmpeg")
    video, audio = out.with_suffix(".h264"), out.with_suffix(".aac")
    result = subprocess.run(
        [
            *("ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", *args),
            *("-map", "0:v", "-c", "copy", "-f", "h264", "-y", str(video)),
            *("-map", "0:a", "-c", "copy", "-f", "adts", "-y", str(audio)),
        ],
        capture_output=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return video, audio


def test_players_leaving_mid_stream_is_no_error(web: ServerProcess) -> None:
    """Watchers close the connection whenever they like: the server logs it quietly, at debug, and
    frees the client's share of remuxes (at most two at once per client) for the next request."""
    for _ in range(6):
        deadline = time.monotonic() + 30
        while not _watch_then_reset(web.http_port):  # refused: a share not yet freed; soon it is
            assert time.monotonic() < deadline, "the remuxes of a client that left were never freed"
            time.sleep(0.05)
    time.sleep(1)
    assert "Error handling request" not in web.log() and "Traceback" not in web.log(), web.log()


def _watch_then_reset(port: int) -> bool:
    """GET /mp4/ten.mp4, read 100 kB of it and reset the connection; False if refused (503)."""
    # the timeout only bounds a hung server: a loaded machine may take seconds to start a remux
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(b"GET /mp4/ten.mp4 HTTP/1.1\r\nHost: streamd\r\n\r\n")
        got = b""
        while len(got) < 100_000:
            chunk = sock.recv(65536)
            assert chunk, f"the server closed after {len(got)} bytes"
            got += chunk
            if b"at once from" in got and got.startswith(b"HTTP/1.1 503"):
                return False
            assert got.startswith((b"HTTP/1.1 200", b"HTTP/1.1 503")) or len(got) < 12, got[:300]
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset it
    return True


def test_ffprobe_reads_the_fmp4_fallback(web: ServerProcess) -> None:
    need("ffprobe")
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", web.http("mp4/sub%20dir/moov%20end.mp4")],
        capture_output=True,
        timeout=60,
        check=True,
    )
    streams = {s["codec_type"]: s for s in json.loads(out.stdout)["streams"]}
    assert streams["video"]["codec_name"] == "h264" and streams["audio"]["codec_name"] == "aac"


def test_ffmpeg_fmp4_fallback_is_bit_exact(web: ServerProcess, tmp_path: Path) -> None:
    video, audio = _ffmpeg(["-i", web.http("mp4/bframes.mp4")], tmp_path / "fmp4")
    assert received_video_nals(video) == source_video_nals(web.media / "bframes.mp4")
    assert received_audio_frames(audio) == source_audio_frames(web.media / "bframes.mp4")


@pytest.mark.parametrize("port", ["rtsp", "http"])
def test_ffmpeg_over_the_http_tunnel_is_bit_exact(web: ServerProcess, tmp_path: Path, port: str) -> None:
    number = web.port if port == "rtsp" else web.http_port
    url = f"rtsp://127.0.0.1:{number}/bframes.mp4"
    video, audio = _ffmpeg(["-rtsp_transport", "http", "-i", url], tmp_path / "tunnel")
    assert received_video_nals(video) == source_video_nals(web.media / "bframes.mp4")
    assert received_audio_frames(audio) == source_audio_frames(web.media / "bframes.mp4")
    assert "(HTTP tunnel)" in web.log()


async def test_chromium_opens_index_follows_watch_link_and_plays(web: ServerProcess, tmp_path: Path) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip("chromium is not installed (scripts/test installs it)")
    async with chromium_tab(tmp_path) as tab:
        await tab.call("Page.navigate", url=web.http())
        await tab.wait_for("document.readyState === 'complete' && !!document.querySelector('a.watch')")
        await tab.screenshot(ARTIFACTS / "http-index-page.png")  # docs/index-page.png is a copy
        await tab.evaluate("document.querySelector('a.watch[href=\"/watch/ten.mp4\"]').click()")
        await tab.wait_for("location.pathname === '/watch/ten.mp4' && !!document.querySelector('video')")
        state = await tab.wait_for(PLAYED_SECONDS.format(1.5), timeout=30)
        await tab.screenshot(ARTIFACTS / "http-watch-page.png")
        assert state["error"] is None, state
        assert state["t"] > 1.5 and state["w"] == 160, state
