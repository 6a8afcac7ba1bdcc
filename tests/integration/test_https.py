"""HTTPS for the web side with real clients: every route over TLS (pages, API, /files, /mp4),
Chromium playing the watch page, RTSP over HTTPS tunnels (ffmpeg ``-rtsp_transport https``,
GStreamer ``rtspsh://``), the plain port's redirect, and strict paths refused in clear."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.chromium import CHROMIUM, PLAYED_SECONDS, chromium_tab
from tests.integration.conftest import ServerProcess, free_tcp_port, need, start_server, stop_all
from tests.integration.gst import run_pipeline
from tests.integration.source import received_video_nals, source_video_frame_count, source_video_nals
from tests.tlscerts import CertPair

pytestmark = pytest.mark.integration

UNVERIFIED = ssl.create_default_context()
UNVERIFIED.check_hostname = False
UNVERIFIED.verify_mode = ssl.CERT_NONE


@pytest.fixture(scope="module")
def web(
    media_dir: Path, tls_pair: CertPair, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("https")
    config = folder / "streamd.toml"
    config.write_text('https_redirect = true\n[paths."ten.mp4"]\nencryption = "strict"\n')
    https_port = free_tcp_port()
    proc = start_server(
        media_dir,
        folder,
        "--https-port",
        str(https_port),
        "--rtsps-port",
        str(free_tcp_port()),
        "--tls-cert",
        str(tls_pair.cert),
        "--tls-key",
        str(tls_pair.key),
        "--config",
        str(config),
    )
    proc.https_port = https_port  # type: ignore[attr-defined]
    yield proc
    stop_all(proc)


def https(server: ServerProcess, path: str = "") -> str:
    return f"https://127.0.0.1:{server.https_port}/{path}"  # type: ignore[attr-defined]


def get(url: str) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=30, context=UNVERIFIED) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def test_every_route_over_https(web: ServerProcess) -> None:
    status, body, _ = get(https(web))
    assert status == 200 and b"bframes.mp4" in body
    assert f"rtsps://127.0.0.1:{_rtsps_port(web)}/".encode() in body  # links for players: over TLS too
    status, body, _ = get(https(web, "api/v1/paths"))
    assert status == 200 and any(p["name"] == "bframes.mp4" for p in json.loads(body)["paths"])
    status, body, _ = get(https(web, "files/bframes.mp4"))
    assert status == 200 and body == (web.media / "bframes.mp4").read_bytes()
    status, body, headers = get(https(web, "mp4/bframes.mp4"))
    assert status == 200 and body[4:8] == b"ftyp" and headers["Content-Type"] == "video/mp4"
    status, body, _ = get(https(web, "sdp/bframes.mp4"))
    assert status == 200 and body.startswith(b"v=0")
    status, body, _ = get(https(web, "metrics"))
    assert status == 200


def test_plain_http_redirects_to_https(web: ServerProcess) -> None:
    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as caught:
        opener.open(web.http("api/v1/paths?limit=5"), timeout=30)
    assert caught.value.code == 308
    assert caught.value.headers["Location"] == https(web, "api/v1/paths?limit=5")
    status, _body, _ = get(web.http("api/v1/paths"))  # urllib follows it to HTTPS
    assert status == 200


def test_strict_path_refused_over_plain_tunnel_and_served_over_https(web: ServerProcess) -> None:
    need("ffprobe")
    plain = subprocess.run(
        ["ffprobe", "-v", "error", "-rtsp_transport", "http", f"rtsp://127.0.0.1:{web.http_port}/ten.mp4"],
        capture_output=True,
        timeout=60,
    )
    assert plain.returncode != 0
    status, body, _ = get(https(web, "files/ten.mp4"))
    assert status == 200 and body == (web.media / "ten.mp4").read_bytes()


@pytest.mark.parametrize("port", ["https", "rtsps"])
def test_ffmpeg_tunnels_rtsp_over_https_bit_exact(web: ServerProcess, tmp_path: Path, port: str) -> None:
    """ffmpeg 5.1's ``-rtsp_transport https``: RTSP over an HTTP tunnel inside TLS, to the HTTPS
    port or to the RTSPS port (which hands HTTP requests over like the plain RTSP port)."""
    need("ffmpeg")
    number = web.https_port if port == "https" else _rtsps_port(web)  # type: ignore[attr-defined]
    video = tmp_path / "v.h264"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "https",
         "-i", f"rtsp://127.0.0.1:{number}/bframes.mp4",
         "-map", "0:v", "-c", "copy", "-f", "h264", "-y", str(video)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    assert received_video_nals(video) == source_video_nals(web.media / "bframes.mp4")
    assert "(HTTP tunnel) bframes.mp4" in web.log()


def _rtsps_port(web: ServerProcess) -> int:
    args = web.process.args
    assert isinstance(args, list)
    return int(args[args.index("--rtsps-port") + 1])


def test_gstreamer_rtspsh_tunnel_over_https(web: ServerProcess, tmp_path: Path) -> None:
    """GStreamer 1.22's ``rtspsh://`` (RTSP over HTTP over TLS)."""
    need("gst-launch-1.0")
    video = tmp_path / "v.yuv"
    run_pipeline(
        f"rtspsrc location=rtspsh://127.0.0.1:{web.https_port}/bframes.mp4 tls-validation-flags=0 "  # type: ignore[attr-defined]
        f"! rtph264depay ! h264parse ! avdec_h264 ! videoconvert ! video/x-raw,format=I420 "
        f"! filesink location={video}"
    )
    frames = source_video_frame_count(web.media / "bframes.mp4")
    assert video.stat().st_size == 320 * 240 * 3 // 2 * frames


async def test_chromium_plays_the_watch_page_over_https(web: ServerProcess, tmp_path: Path) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip("chromium is not installed (scripts/test installs it)")
    async with chromium_tab(tmp_path, "--ignore-certificate-errors") as tab:
        await tab.call("Page.navigate", url=https(web, "watch/bframes.mp4"))
        await tab.wait_for("document.readyState === 'complete' && !!document.querySelector('video')")
        state = await tab.wait_for(PLAYED_SECONDS.format(1.0), timeout=30)
        assert state["error"] is None, state
        assert await tab.evaluate("location.protocol") == "https:"


def test_pyav_tunnels_rtsp_over_https(web: ServerProcess) -> None:
    """PyAV (its own FFmpeg) with ``rtsp_transport=https``: every frame decoded."""
    import av

    url = f"rtsp://127.0.0.1:{web.https_port}/bframes.mp4"  # type: ignore[attr-defined]
    with av.open(url, options={"rtsp_transport": "https"}, timeout=30) as container:
        frames = sum(1 for _ in container.decode(container.streams.video[0]))
    assert frames == source_video_frame_count(web.media / "bframes.mp4")
