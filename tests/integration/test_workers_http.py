"""``streamd serve --workers 2``: HTTP requests reach the worker that holds what they name (issue 18).

Every request here is pinned to the worker that does NOT hold the path or session
(:mod:`tests.integration.workers_pin`): a WHEP viewer (aiortc) of a path ffmpeg publishes on the
other worker gets its packets as published, and its DELETE ends it there; a WHIP publisher
(aiortc) on one worker is read over RTSP on the other (ffprobe) and keeps every other publisher
out; live HLS asked of the worker without the publisher is the owner's one stream (same
playlist names, byte-identical objects), and its request counters are the server's.
"""

from __future__ import annotations

import asyncio
import base64
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from media.h264 import nal_type
from streamd.auth.secrets import make_secret
from streamd.rtsp.message import InterleavedFrame
from tests.integration.conftest import ServerProcess, need, start_server
from tests.integration.source import comparable, source_video_nals
from tests.integration.test_pli_relay import _announce, _one_pli, _rtp, _view_and_burst
from tests.integration.test_whep import _wait, _whip_publish
from tests.integration.test_workers import Publisher
from tests.integration.whep_client import WhepClient, h264_units
from tests.integration.workers_pin import exchange, pinned, steer
from tests.mediagen import make_h264_aac_mp4, make_live_clip
from tests.rtsp_client import RawRtspClient
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    need("ffmpeg")
    media = tmp_path_factory.mktemp("workers-http-media")
    make_h264_aac_mp4(media / "bframes.mp4", seconds=2, bframes=True)  # what pinning probes with
    make_live_clip(media / "clip.mp4")
    proc = start_server(media, tmp_path_factory.mktemp("workers-http-server"), "--workers", "2")
    wait_until(lambda: "all 2 workers ready" in proc.log(), "both workers ready", timeout=120)
    yield proc
    assert proc.stop() == 0
    assert "Traceback" not in proc.log(), proc.log()


def get_on(server: ServerProcess, worker: int, path: str) -> tuple[int, dict[str, str], bytes]:
    """An HTTP GET that reaches ``worker`` (HTTP on the RTSP port, over a pinned connection)."""
    with pinned(server.port, server.rtp_port, worker) as sock:
        return exchange(sock, f"GET /{path} HTTP/1.1\nHost: 127.0.0.1\nConnection: close\n")


def logged_by(server: ServerProcess, pattern: str) -> set[int]:
    """The workers whose log lines match ``pattern``."""
    return {int(i) for i in re.findall(rf"\[worker (\d)\] [^\n]*{pattern}", server.log())}


def test_whep_viewer_on_the_other_worker_gets_the_path_from_its_owner(workers: ServerProcess) -> None:
    path = "live/whep-across"
    publisher = Publisher(workers, path, worker=0)
    try:
        with steer(workers.port, workers.rtp_port, 1, 1) as other:  # the POST, then the DELETE

            async def view() -> tuple[list[list[bytes]], int, int]:
                client = WhepClient(f"http://127.0.0.1:{other.port}/whep/{path}")
                await client.start()
                assert client.status == 201, client.answer
                assert await _wait(lambda: sum(p[2] for p in client.packets["video"]) >= 30, 30)
                assert await _wait(lambda: len(client.packets["audio"]) >= 25, 10)  # AAC as Opus
                units = h264_units(client.packets["video"])
                deleted = await client.delete()
                await client.close()
                return units, deleted, len(client.packets["audio"])

            units, deleted, _ = asyncio.run(view())
    finally:
        publisher.stop()
    got = comparable([n for unit in units for n in unit])
    assert nal_type(got[0]) == 5, "the viewer begins on a keyframe"
    source = source_video_nals(workers.media / "clip.mp4")
    doubled = source + source
    assert len(got) >= 25 and any(
        doubled[i : i + len(got)] == got for i, n in enumerate(doubled) if n == got[0]
    )
    # the session, its conversion to Opus and its end were the owner's, for the real client
    assert logged_by(workers, rf"\(127\.0\.0\.1\): offer for {path} answered") == {0}
    assert logged_by(workers, rf"{path}: track \d converted to Opus") == {0}
    assert deleted == 200
    wait_until(lambda: logged_by(workers, rf"{path} ended: the viewer ended it \(DELETE\)") == {0}, "ended")


class _Via:
    """A server's HTTP side as a test sees it, reached through a steering port."""

    def __init__(self, port: int) -> None:
        self.port = port

    def http(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{path}"


def test_a_whep_viewers_pli_on_the_other_worker_reaches_the_publisher(workers: ServerProcess) -> None:
    """The viewer's offer went to the owner, so its PLI is the owner's to pass on: one RTCP PLI
    (a burst of 20 makes one) on the publisher's interleaved RTCP channel."""
    path = "live/pli-across"
    with (
        steer(workers.port, workers.rtp_port, 0) as to_owner,
        steer(workers.port, workers.rtp_port, 1) as other,
    ):

        async def run() -> None:
            client = await RawRtspClient("127.0.0.1", to_owner.port).connect()
            try:
                await _announce(client, path, "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record")
                for seq in range(3):
                    await client.send_raw(bytes(InterleavedFrame(0, _rtp(seq))))
                await _view_and_burst(_Via(other.port), path)  # type: ignore[arg-type]
                await _one_pli(lambda: [d for _, c, d in client.received.frames if c == 1])
            finally:
                await client.close()

        asyncio.run(run())
    assert logged_by(workers, rf"offer for {path} answered") == {0}


def _ffprobe(url: str) -> str:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-show_entries", "stream=codec_name",
         "-of", "compact=p=0", url],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    return result.stdout + result.stderr


def test_whip_publisher_on_one_worker_is_read_and_held_on_the_other(workers: ServerProcess) -> None:
    path = "live/whip-across"
    with steer(workers.port, workers.rtp_port, 0, 1, 1, 1, 1) as steering:
        base = f"http://127.0.0.1:{steering.port}"

        async def run() -> None:
            pc, status, location = await _whip_publish(f"{base}/whip/{path}")  # worker 0
            assert status == 201 and location, status
            assert await _wait(lambda: f"{path} is live" in workers.log(), 20)
            # RTSP on worker 1: relayed from worker 0, kept as sent (H.264 and Opus)
            probe = await asyncio.to_thread(_ffprobe, steering.url(path))
            assert "codec_name=h264" in probe and "codec_name=opus" in probe, probe
            # one publisher across workers: WHIP (409, as on one worker) and ANNOUNCE (403 busy)
            other, status, _ = await _whip_publish(f"{base}/whip/{path}")
            await other.close()
            assert status == 409
            sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\n"
            sdp += "a=rtpmap:96 H264/90000\r\na=control:streamid=0\r\n"
            with pinned(workers.port, workers.rtp_port, 1) as sock:
                status, _, body = await asyncio.to_thread(
                    exchange,
                    sock,
                    f"ANNOUNCE {workers.url(path)} RTSP/1.0\nCSeq: 9\nContent-Type: application/sdp\n",
                    sdp.encode(),
                )
            assert (status, body) == (403, b"busy\n")
            # DELETE on worker 1 ends the publisher on worker 0 and frees the path
            deleted = await asyncio.to_thread(_delete, workers, 1, location)
            assert deleted == 200
            assert await _wait(lambda: logged_by(workers, f"{path} is offline") == {0}, 10)
            again, status, _ = await _whip_publish(f"{base}/whip/{path}")  # worker 1 now
            assert status == 201
            await again.close()
            await pc.close()

        asyncio.run(run())
    assert logged_by(workers, f"{path} ended: the publisher ended it \\(DELETE\\)") == {0}


def _delete(server: ServerProcess, worker: int, location: str) -> int:
    with pinned(server.port, server.rtp_port, worker) as sock:
        return exchange(sock, f"DELETE {location} HTTP/1.1\nHost: 127.0.0.1\nConnection: close\n")[0]


def test_live_hls_from_the_other_worker_is_the_owners_stream(workers: ServerProcess) -> None:
    path = "live/hls-across"
    publisher = Publisher(workers, path, worker=0)
    try:
        playlists = {}
        for worker in (1, 0):
            status, headers, body = get_on(
                workers, worker, f"hls/{path}/main/media.m3u8?_HLS_msn=2&_HLS_part=0"
            )
            assert status == 200, body
            assert headers["content-type"] == "application/vnd.apple.mpegurl"
            playlists[worker] = body.decode()
        names = {w: re.findall(r"^([0-9a-f]{8})-(\d+)\.m4s$", text, re.M) for w, text in playlists.items()}
        assert names[1] and names[1][:2] == names[0][:2]  # one stream, one numbering
        stream = names[1][0][0]
        objects = [f"{stream}-init.mp4", *(f"{stream}-{msn}.m4s" for _, msn in names[1][:2])]
        for name in objects:
            answers = [get_on(workers, worker, f"hls/{path}/main/{name}") for worker in (1, 0)]
            assert answers[0][0] == answers[1][0] == 200
            assert answers[0][2] == answers[1][2] and len(answers[0][2]) > 100, name
            assert answers[0][1]["etag"] == answers[1][1]["etag"]
    finally:
        publisher.stop()
    assert logged_by(workers, f"{path}: HLS stream {stream} begins") == {0}
    # the counters are the server's, whichever worker is scraped
    counts = []
    for worker in (0, 1):
        text = get_on(workers, worker, "metrics")[2].decode()
        found = dict(re.findall(r'streamd_hls_requests_total\{kind="(\w+)"\} (\S+)', text))
        counts.append({kind: float(value) for kind, value in found.items()})
    assert counts[0] == counts[1]
    assert counts[0]["playlist"] >= 2 and counts[0]["segment"] >= 4 and counts[0]["init"] >= 2


def test_only_the_owner_holds_the_path_s_hls(workers: ServerProcess, tmp_path: Path) -> None:
    """A path nobody publishes is answered where asked, as on one worker: 404."""
    status, _, body = get_on(workers, 1, "hls/live/nobody/main/media.m3u8")
    assert status == 404, body


def test_the_owner_authorizes_a_forwarded_request_as_the_clients(tmp_path: Path) -> None:
    """With users: a live HLS request on the worker without the publisher is refused or allowed by
    the owner, for the client's address, through the one Authorizer (challenges passed back)."""
    need("ffmpeg")
    media = tmp_path / "media"
    media.mkdir()
    make_h264_aac_mp4(media / "bframes.mp4", seconds=2, bframes=True)
    make_live_clip(media / "clip.mp4")
    config = tmp_path / "users.toml"
    config.write_text(
        'auth_methods = ["digest", "basic"]\n'
        '[[users]]\nname = "any"\n'
        'permissions = [{ action = "read", path = "*.mp4" }, { action = "publish", path = "live/*" },'
        ' { action = "api" }]\n'
        f'[[users]]\nname = "viewer"\npassword = "{make_secret("viewer", "v pw", "streamd")}"\n'
        'permissions = [{ action = "read", path = "live/*" }]\n'
    )
    server = start_server(media, tmp_path, "--config", str(config), "--workers", "2")
    try:
        wait_until(lambda: "all 2 workers ready" in server.log(), "both workers ready", timeout=120)
        path = "live/locked"
        publisher = Publisher(server, path, worker=0)
        try:
            playlist = f"hls/{path}/main/media.m3u8"
            status, headers, _ = get_on(server, 1, playlist)
            assert status == 401 and "www-authenticate" in headers
            assert logged_by(server, rf"HTTP GET /{playlist} from 127\.0\.0\.1 refused") == {0}
            login = base64.b64encode(b"viewer:v pw").decode()
            with pinned(server.port, server.rtp_port, 1) as sock:
                head = f"GET /{playlist} HTTP/1.1\nHost: 127.0.0.1\nAuthorization: Basic {login}\n"
                status, _, body = exchange(sock, head + "Connection: close\n")
            assert status == 200 and body.startswith(b"#EXTM3U"), body
        finally:
            publisher.stop()
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.log(), server.log()
