"""Relay: streamd B pulls a path from streamd A on demand (TCP and UDP), ffmpeg reading B gets A's
video NAL units bit-exact, B sends A RTCP receiver reports, B lets go of A a grace period after
the reader leaves, an unreachable upstream is a quick 503, and B reconnects when A comes back
after a restart."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest

from media.h264 import nal_type
from tests.integration.conftest import ServerProcess, free_tcp_port, need, start_server, stop_all
from tests.integration.source import received_video_nals, source_video_nals
from tests.integration.test_live import is_subsequence_start
from tests.mediagen import make_live_clip
from tests.rtsp_client import RawRtspClient
from tests.waiting import until, wait_until

pytestmark = pytest.mark.integration


def wait_for_log(server: ServerProcess, *parts: str, count: int = 1, timeout: float = 10) -> None:
    """Until ``count`` log lines hold all of ``parts``."""
    deadline = time.monotonic() + timeout
    while sum(all(p in line for p in parts) for line in server.log().splitlines()) < count:
        assert time.monotonic() < deadline, f"{parts!r} not logged {count}x:\n{server.log()}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """``a`` serves clip.mp4 (a keyframe every second); ``b`` relays it at relay/tcp and relay/udp."""
    need("ffmpeg")
    tmp = tmp_path_factory.mktemp("relay")
    media = tmp / "media"
    media.mkdir()
    make_live_clip(media / "clip.mp4")
    a = start_server(media, tmp)
    config = tmp / "b.toml"
    source = a.url("clip.mp4")
    config.write_text(
        f'[paths."relay/tcp"]\nsource = "{source}"\nsource_close_after = 1\n'
        f'[paths."relay/udp"]\nsource = "{source}"\nsource_transport = "udp"\nsource_close_after = 1\n'
        f'[paths."relay/down"]\nsource = "rtsp://127.0.0.1:{free_tcp_port()}/nothing"\n'
    )
    b = start_server(tmp / "b-media", tmp, "--config", str(config))
    yield a, b
    stop_all(b, a)


def check_three_seconds(input_args: list[str], upstream: ServerProcess, tmp: Path) -> None:
    """ffmpeg reads ``input_args`` for 3 s: the video starts on a keyframe and is the upstream's, exactly."""
    video = tmp / "v.h264"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", *input_args, "-t", "3",
         "-map", "0:v", "-c", "copy", "-f", "h264", "-y", str(video)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    got = received_video_nals(video)
    first_picture = next(n for n in got if nal_type(n) != 6)  # the clip's first IDR has an SEI before it
    assert nal_type(first_picture) == 5, "the reader starts on a keyframe"
    assert len(got) >= 50 and is_subsequence_start(got, source_video_nals(upstream.media / "clip.mp4"))


@pytest.mark.parametrize("upstream", ["tcp", "udp"])
def test_ffmpeg_through_relay_bit_exact_then_upstream_closed(
    pair: tuple[ServerProcess, ServerProcess], tmp_path: Path, upstream: str
) -> None:
    a, b = pair
    check_three_seconds(["-rtsp_transport", "tcp", "-i", b.url(f"relay/{upstream}")], a, tmp_path)
    assert f"online (2 tracks over {upstream.upper()})" in b.log()
    # the reader has left: one second later B tears its upstream session down
    wait_until(lambda: not a.session_ids(), "B to let go of its upstream session at A")
    # A logs the end just after the session leaves its registry
    wait_until(lambda: "ended (TEARDOWN)" in a.log(), "A to log the upstream session's TEARDOWN")
    ended = [line for line in a.log().splitlines() if "ended (TEARDOWN)" in line]
    # the relay reported upstream like any receiver: A logs the loss and jitter its RRs gave
    assert ended and "loss 0.0% (0 total), jitter" in ended[-1], ended


def test_browser_fallback_pulls_a_relayed_path(
    pair: tuple[ServerProcess, ServerProcess], tmp_path: Path
) -> None:
    """/mp4/relay/... pulls the upstream like an RTSP reader would and streams it as MP4."""
    a, b = pair
    check_three_seconds(["-i", b.http("mp4/relay/tcp")], a, tmp_path)
    wait_until(lambda: not a.session_ids(), "B to let go of its upstream session at A")


async def test_unreachable_upstream_is_a_quick_503(pair: tuple[ServerProcess, ServerProcess]) -> None:
    _, b = pair
    client = await RawRtspClient("127.0.0.1", b.port).connect()
    try:
        started = time.monotonic()
        response = await client.request("DESCRIBE", client.url("relay/down"))
        assert response.status == 503 and time.monotonic() - started < 5
        again = await client.request("DESCRIBE", client.url("relay/down"))  # while backing off
        assert again.status == 503
    finally:
        await client.close()


async def test_relay_reconnects_after_upstream_restart(tmp_path: Path) -> None:
    need("ffmpeg")
    media = tmp_path / "media"
    media.mkdir()
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=s=160x120:r=10",
         "-t", "30", "-c:v", "libx264", "-g", "10", "-y", str(media / "long.mp4")],
        check=True, timeout=60,
    )  # fmt: skip
    port = free_tcp_port()

    def start_upstream() -> ServerProcess:
        with mock.patch("tests.integration.conftest.free_tcp_port", return_value=port):
            return start_server(media, tmp_path, "--no-http")

    a = start_upstream()
    config = tmp_path / "b.toml"
    config.write_text(f'[paths."relay/again"]\nsource = "{a.url("long.mp4")}"\nsource_close_after = 1\n')
    b = start_server(tmp_path / "none", tmp_path, "--no-http", "--config", str(config))
    client = await RawRtspClient("127.0.0.1", b.port).connect()
    try:
        assert (await client.request("DESCRIBE", client.url("relay/again"))).status == 200
        transport = {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"}
        assert (await client.request("SETUP", client.url("relay/again/trackID=0"), transport)).status == 200
        assert (await client.request("PLAY", client.url("relay/again"))).status == 200
        await until(lambda: client.received.rtp(0), "RTP through the relay")
        a.stop()
        # A says BYE, then closes the connection: whichever B notices first takes it offline, and
        # tells its readers (BYE); the reader's client gets it a moment after B logs it
        await until(lambda: client.received.got_bye(1), "BYE to the reader when the upstream went away")
        a = await asyncio.to_thread(start_upstream)
        # the reader's session is still there, so B keeps trying (back-off 1, 2, 4 s) and gets back on
        await asyncio.to_thread(wait_for_log, b, "online (1 tracks over TCP)", count=2, timeout=15)
        response = await client.request("DESCRIBE", client.url("relay/again"))
        assert response.status == 200
    finally:
        await client.close()
        b.stop()
        a.stop()
    assert "Traceback" not in b.log(), b.log()
