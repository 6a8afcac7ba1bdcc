"""Draining a server and moving a path at run time: ``streamd drain`` / ``streamd move`` call the
admin API; playing clients get a REDIRECT, new ones a 302 that ffprobe follows, and whoever stays
past the grace period is ended with RTCP BYE."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, ServerProcess, need, start_server, stop_all
from tests.rtsp_client import RawRtspClient
from tests.waiting import until

pytestmark = pytest.mark.integration

TCP = {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"}


@pytest.fixture
def pair(media_dir: Path, tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """``front`` (with the HTTP API) is drained or has a path moved to ``target``."""
    target = start_server(media_dir, tmp_path, "--no-http")
    front = start_server(media_dir, tmp_path)
    yield front, target
    stop_all(front, target)


def streamd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamd.cli", *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


async def playing_client(server: ServerProcess, path: str = "ten.mp4") -> RawRtspClient:
    client = await RawRtspClient("127.0.0.1", server.port).connect()
    assert (await client.request("DESCRIBE", client.url(path))).status == 200
    assert (await client.request("SETUP", client.url(f"{path}/trackID=0"), TCP)).status == 200
    assert (await client.request("PLAY", client.url(path))).status == 200
    return client


async def test_drain_redirects_players_sends_new_clients_over_and_waits(
    pair: tuple[ServerProcess, ServerProcess],
) -> None:
    need("ffprobe")
    front, target = pair
    client = await playing_client(front)
    try:
        drain = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "streamd.cli", "drain", "--api", front.http(), "--to",
            f"rtsp://127.0.0.1:{target.port}", "--grace", "20", "--wait",
            stdout=asyncio.subprocess.PIPE, cwd=ROOT,
        )  # fmt: skip
        request = await client.next_server_request(timeout=20)
        assert request.method == "REDIRECT"
        assert request.headers["Location"] == target.url("ten.mp4")
        await client.send_raw(f"RTSP/1.0 200 OK\r\nCSeq: {request.cseq}\r\n\r\n".encode())
        # a new client is sent over with 302, and ffprobe follows it
        probe = await asyncio.create_subprocess_exec(
            "ffprobe", "-loglevel", "error", "-show_streams", "-of", "json", front.url("ten.mp4"),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        streams = json.loads((await asyncio.wait_for(probe.communicate(), 30))[0])["streams"]
        assert sorted(s["codec_type"] for s in streams) == ["audio", "video"]
        assert "ten.mp4: DESCRIBE" in target.log()
        # the redirected client leaves; the drain command sees no session left and returns
        assert (await client.request("TEARDOWN", client.url("ten.mp4"))).status == 200
        out, _ = await asyncio.wait_for(drain.communicate(), 30)
        assert drain.returncode == 0, out
        assert b"1 playing client(s) sent a REDIRECT" in out and b"drained" in out
    finally:
        await client.close()
    # cancelled: served here again
    assert streamd("drain", "--api", front.http(), "--cancel").returncode == 0
    again = await RawRtspClient("127.0.0.1", front.port).connect()
    try:
        assert (await again.request("DESCRIBE", again.url("ten.mp4"))).status == 200
    finally:
        await again.close()


def drained(server: ServerProcess) -> dict | None:
    """The drain status once no session is left, else None."""
    status = server.api("drain")
    return status if status["sessions"] == 0 else None


async def test_drain_to_nowhere_refuses_new_sessions_and_ends_the_rest_after_grace(
    pair: tuple[ServerProcess, ServerProcess],
) -> None:
    front, _ = pair
    client = await playing_client(front)
    try:
        assert streamd("drain", "--api", front.http(), "--grace", "1").returncode == 0
        other = await RawRtspClient("127.0.0.1", front.port).connect()
        try:
            assert (await other.request("DESCRIBE", other.url("ten.mp4"))).status == 503
            announce = await other.request(
                "ANNOUNCE", other.url("live/cam"), {"Content-Type": "application/sdp"}, b"v=0\r\n"
            )
            assert announce.status == 503
        finally:
            await other.close()
        await until(lambda: client.received.got_bye(1), "BYE after the grace period")
        status = await until(lambda: drained(front), "the drain to end the last session")
        assert status["draining"] and status["sessions"] == 0
    finally:
        await client.close()


async def test_move_a_path_and_bring_it_back(pair: tuple[ServerProcess, ServerProcess]) -> None:
    need("ffprobe")
    front, target = pair
    client = await playing_client(front)
    try:
        moved = streamd("move", "ten.mp4", "--api", front.http(), "--to", target.url("bframes.mp4"))
        assert moved.returncode == 0 and "1 client(s) told" in moved.stdout, moved
        request = await client.next_server_request()
        assert request.method == "REDIRECT" and request.headers["Location"] == target.url("bframes.mp4")
        subprocess.run(["ffprobe", "-loglevel", "error", front.url("ten.mp4")], check=True, timeout=30)
        assert "bframes.mp4: DESCRIBE" in target.log()
        other = await playing_client(front, "bframes.mp4")  # other paths are not affected
        await other.close()
        back = streamd("move", "ten.mp4", "--api", front.http())
        assert back.returncode == 0 and "served here again" in back.stdout
        fresh = await playing_client(front)
        await fresh.close()
    finally:
        await client.close()


def test_admin_endpoints_only_from_admin_networks(media_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "closed.toml"
    config.write_text('admin_networks = ["10.0.0.0/8"]\n')
    server = start_server(media_dir, tmp_path, "--config", str(config))
    try:
        result = streamd("drain", "--api", server.http(), "--to", "rtsp://elsewhere:8554")
        assert result.returncode == 1 and "admin_networks" in result.stderr
        bad = urllib.request.Request(server.http("api/v1/drain"), data=b"[1]", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bad, timeout=30)
        assert refused.value.code == 403
        status = json.loads(urllib.request.urlopen(server.http("api/v1/drain"), timeout=30).read())
        assert status["draining"] is False  # reading the state is open to all
    finally:
        server.stop()


def test_drain_rejects_bad_targets(pair: tuple[ServerProcess, ServerProcess]) -> None:
    front, _ = pair
    for body in (b'{"to": ["http://x/"]}', b'{"to": "rtsp://x/"}', b'{"grace": -1}', b"not json", b"[]"):
        request = urllib.request.Request(front.http("api/v1/drain"), data=body, method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 400, body
    status = json.loads(urllib.request.urlopen(front.http("api/v1/drain"), timeout=30).read())
    assert status["draining"] is False
