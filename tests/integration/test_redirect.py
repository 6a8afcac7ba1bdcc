"""REDIRECT: a path served elsewhere answers 302 round-robin (ffprobe follows it to a second
streamd), and playing clients are moved with a server-to-client REDIRECT request."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamd.catalog import Catalog
from streamd.config import ServerConfig
from streamd.server import RtspServer
from tests.integration.conftest import ServerProcess, need, start_server, stop_all
from tests.integration.gst import run_pipeline
from tests.rtsp_client import RawRtspClient

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def servers(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ...]]:
    """``target`` serves the media; ``front`` redirects ``moved`` to it and ``rr`` to two places."""
    tmp = tmp_path_factory.mktemp("redirect")
    target = start_server(media_dir, tmp, "--no-http")
    config = tmp / "front.toml"
    config.write_text(
        f'[paths."moved"]\nredirect = ["{target.url("bframes.mp4")}"]\n'
        '[paths."rr"]\nredirect = ["rtsp://edge1:8554/rr", "rtsp://edge2:8554/rr"]\n'
    )
    front = start_server(tmp, tmp, "--no-http", "--config", str(config))
    yield target, front
    stop_all(front, target)


def test_ffprobe_follows_302_to_the_other_server(servers: tuple[ServerProcess, ...]) -> None:
    need("ffprobe")
    target, front = servers
    result = subprocess.run(
        ["ffprobe", "-loglevel", "error", "-show_streams", "-of", "json", front.url("moved")],
        capture_output=True, check=True, timeout=30,
    )  # fmt: skip
    codecs = sorted(s["codec_name"] for s in json.loads(result.stdout)["streams"])
    assert codecs == ["aac", "h264"]
    assert "-> 302 " + target.url("bframes.mp4") in front.log()
    assert "bframes.mp4: DESCRIBE (2 tracks)" in target.log()


def test_gstreamer_follows_302(servers: tuple[ServerProcess, ...]) -> None:
    need("gst-launch-1.0")
    target, front = servers
    before = target.log().count("bframes.mp4: DESCRIBE")
    run_pipeline(f"rtspsrc location={front.url('moved')} ! fakesink num-buffers=20", timeout=30)
    assert target.log().count("bframes.mp4: DESCRIBE") == before + 1


async def test_round_robin_and_tracks_keep_their_control(servers: tuple[ServerProcess, ...]) -> None:
    _, front = servers
    client = await RawRtspClient("127.0.0.1", front.port).connect()
    try:
        locations = []
        for _ in range(4):
            response = await client.request("DESCRIBE", client.url("rr"))
            assert response.status == 302
            locations.append(response.headers["Location"])
        edges = ["rtsp://edge1:8554/rr", "rtsp://edge2:8554/rr"]
        assert locations == edges * 2
        setup = await client.request(
            "SETUP", client.url("rr/trackID=1"), {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"}
        )
        assert setup.status == 302 and setup.headers["Location"] == edges[0] + "/trackID=1"
        assert (await client.request("OPTIONS", client.url("rr"))).status == 200  # see server._moved
    finally:
        await client.close()


async def test_redirect_request_to_a_playing_client(media_dir: Path) -> None:
    config = ServerConfig(host="127.0.0.1", rtsp_port=0, udp=False, test_stream=False)
    server = RtspServer(config, Catalog(media_dir, test_stream=None))
    await server.start()
    client = await RawRtspClient("127.0.0.1", server.rtsp_port).connect()
    try:
        assert (await client.request("DESCRIBE", client.url("ten.mp4"))).status == 200
        transport = {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"}
        assert (await client.request("SETUP", client.url("ten.mp4/trackID=0"), transport)).status == 200
        assert (await client.request("PLAY", client.url("ten.mp4"))).status == 200
        assert server.relocator.redirect_sessions("other.mp4", lambda p: "rtsp://x/" + p) == 0  # not its path
        told = server.relocator.redirect_sessions(None, lambda path: f"rtsp://edge1:8554/{path}", "npt=5-")
        assert told == 1
        request = await client.next_server_request()
        assert request.method == "REDIRECT" and request.uri.endswith("/ten.mp4")
        assert request.headers["Location"] == "rtsp://edge1:8554/ten.mp4"
        assert request.headers["Session"] == client.session
        assert request.headers["Range"] == "npt=5-" and request.cseq is not None
        await client.send_raw(f"RTSP/1.0 200 OK\r\nCSeq: {request.cseq}\r\n\r\n".encode())
        assert (await client.request("TEARDOWN", client.url("ten.mp4"))).status == 200
        assert client.server_requests == [request]
    finally:
        await client.close()
        await server.stop()
