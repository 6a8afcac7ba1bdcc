"""Three streamd nodes on loopback ports (B runs two worker processes) and a real ``redis-server``
(issue 18 items 3-4): a path
published with ffmpeg on A is read bit-exact on B (ffmpeg) and C (GStreamer) through edge relays,
one upstream session per edge however many local readers; a second publisher on C is refused
(403, and C logs who holds the path); ``cluster_mode = "redirect"`` answers 302 to the owner;
Redis killed mid-run (what is served keeps flowing, new claims 503) and restarted (nodes rejoin,
re-claim); ``streamd drain`` marks the node draining in Redis and sends new players elsewhere;
A killed (readers on B and C get the end of stream, the path is free for a publisher anywhere).
B's two workers are one node: one registration with both workers' sessions, one edge relay for
readers on either worker, a publisher on either claiming for the machine."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from media.h264 import nal_type
from tests.integration.conftest import ServerProcess, need, start_server, stop_all
from tests.integration.gst import rtspsrc_shutdown_race
from tests.integration.source import (
    ffmpeg_copy,
    received_audio_frames,
    received_video_nals,
    source_audio_frames,
    source_video_nals,
)
from tests.integration.test_cluster_store import RedisServer
from tests.integration.test_live import Publisher, is_subsequence_start
from tests.integration.workers_pin import exchange, pinned
from tests.mediagen import make_live_clip
from tests.rtsp_client import RawRtspClient
from tests.waiting import until, wait_until

pytestmark = pytest.mark.integration

CONFIG = """cluster_heartbeat = 0.3
[paths."live/redirect"]
cluster_mode = "redirect"
[paths."live/*"]
source_close_after = 1
"""
OPUS = "m=audio 0 RTP/AVP 96\r\na=rtpmap:96 opus/48000/2\r\n"


@dataclass
class Cluster:
    redis: RedisServer
    a: ServerProcess
    b: ServerProcess
    c: ServerProcess

    def registration(self, node: ServerProcess) -> dict | None:
        out = subprocess.run(
            ["redis-cli", "-p", str(self.redis.port), "GET", f"streamd:node:rtsp://127.0.0.1:{node.port}"],
            capture_output=True, text=True, check=False,
        ).stdout.strip()  # fmt: skip
        return json.loads(out) if out.startswith("{") else None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    need("ffmpeg")
    tmp = tmp_path_factory.mktemp("cluster")
    media = tmp / "media"
    media.mkdir()
    make_live_clip(media / "clip.mp4", 20)
    redis = RedisServer(tmp)
    redis.start()
    config = tmp / "node.toml"
    config.write_text(CONFIG)
    nodes: list[ServerProcess] = []
    try:
        for workers in ((), ("--workers", "2"), ()):  # B: a machine of two worker processes
            nodes.append(start_server(media, tmp, "--config", str(config), "--cluster", redis.url, *workers))
        wait_until(lambda: "all 2 workers ready" in nodes[1].log(), "B's two workers ready", timeout=120)
        yield Cluster(redis, *nodes)
    finally:
        try:
            stop_all(*nodes)
        finally:
            redis.kill()


async def announce(node: ServerProcess, path: str) -> tuple[int, RawRtspClient]:
    """ANNOUNCE an Opus track at ``path`` on ``node``: the status, and the connection (close it)."""
    client = await RawRtspClient("127.0.0.1", node.port).connect()
    sdp = f"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=raw\r\nt=0 0\r\n{OPUS}a=control:trackID=0\r\n"
    response = await client.request(
        "ANNOUNCE", client.url(path), {"Content-Type": "application/sdp"}, sdp.encode()
    )
    return response.status, client


async def play(node: ServerProcess, path: str) -> RawRtspClient:
    """A reader of the first track of ``path`` on ``node`` over TCP, playing."""
    client = await RawRtspClient("127.0.0.1", node.port).connect()
    assert (await client.request("DESCRIBE", client.url(path))).status == 200
    transport = {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"}
    assert (await client.request("SETUP", client.url(f"{path}/trackID=0"), transport)).status == 200
    assert (await client.request("PLAY", client.url(path))).status == 200
    return client


def gst_reader(node: ServerProcess, path: str, raw: Path, audio: Path) -> subprocess.Popen[bytes]:
    need("gst-launch-1.0")
    pipeline = (
        f"rtspsrc name=src location={node.url(path)} protocols=tcp "
        f"src. ! rtph264depay ! video/x-h264,stream-format=byte-stream ! queue ! filesink location={raw} "
        f"src. ! rtpmp4gdepay ! aacparse ! audio/mpeg,stream-format=adts ! queue ! filesink location={audio}"
    )
    return subprocess.Popen(
        ["gst-launch-1.0", "-q", "-e", *pipeline.split()], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def check_video(input_args: list[str], source: Path, video: Path) -> None:
    """ffmpeg reads ``input_args`` for 2 s: the video starts on a keyframe and is the source's, exactly."""
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", *input_args, "-t", "2",
         "-map", "0:v", "-c", "copy", "-f", "h264", "-y", str(video)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    got = received_video_nals(video)
    first_picture = next(n for n in got if nal_type(n) != 6)
    assert nal_type(first_picture) == 5 and len(got) >= 30
    assert is_subsequence_start(got, source_video_nals(source))


def test_every_node_sees_the_three(cluster: Cluster) -> None:
    addresses = sorted(f"rtsp://127.0.0.1:{node.port}" for node in (cluster.a, cluster.b, cluster.c))
    for node in (cluster.a, cluster.b, cluster.c):
        wait_until(lambda n=node: [p["id"] for p in n.api("cluster")["nodes"]] == addresses, "three nodes")
        view = node.api("cluster")
        assert view["available"] and view["node"] == f"rtsp://127.0.0.1:{node.port}"


def test_published_on_a_read_bit_exact_on_b_and_c(cluster: Cluster, tmp_path: Path) -> None:
    a, b, c = cluster.a, cluster.b, cluster.c
    source = a.media / "clip.mp4"
    publisher = Publisher(a, "live/one")
    try:
        graw, gaudio = tmp_path / "g.h264", tmp_path / "g.aac"
        gst = gst_reader(c, "live/one", graw, gaudio)

        # a browser's /mp4 on B pulls the path from A like an RTSP reader would
        check_video(["-i", b.http("mp4/live/one")], source, tmp_path / "http.h264")

        async def scenario() -> None:
            extra = await play(b, "live/one")  # a second reader on B: still one upstream session
            await until(lambda: extra.received.rtp(0), "RTP through B's edge relay")
            video, audio = tmp_path / "v.h264", tmp_path / "a.aac"
            await asyncio.to_thread(
                ffmpeg_copy, ["-rtsp_transport", "tcp", "-i", b.url("live/one")], video, audio, 3
            )
            # A serves its publisher and one edge relay per node, not one session per reader
            await until(
                lambda: len(a.session_ids()) == 3, "the publisher and two edge relays on A", timeout=10
            )
            got = received_video_nals(video)
            assert nal_type(got[0]) == 5, "the reader starts on a keyframe"
            assert len(got) >= 50 and is_subsequence_start(got, source_video_nals(source))
            frames = received_audio_frames(audio)
            assert len(frames) >= 100 and is_subsequence_start(frames, source_audio_frames(source))
            # GET /api/v1/cluster: who owns the path, who pulls it
            assert "live/one" in a.api("cluster")["claims"] and b.api("cluster")["edge_relays"] == [
                "live/one"
            ]
            await extra.close()

        asyncio.run(scenario())
        gst.send_signal(signal.SIGINT)
        output = gst.communicate(timeout=15)[0].decode(errors="replace")
        assert gst.returncode == 0 or rtspsrc_shutdown_race(gst.returncode, output), output
    finally:
        publisher.stop()
    got = received_video_nals(graw)
    assert nal_type(got[0]) == 5 and len(got) >= 40 and is_subsequence_start(got, source_video_nals(source))
    frames = received_audio_frames(gaudio)
    assert len(frames) >= 80 and is_subsequence_start(frames, source_audio_frames(source))
    assert b.log().count("edge relay live/one <- ") >= 1 and "online (2 tracks over TCP)" in b.log()


def test_a_machine_of_two_workers_is_one_node(cluster: Cluster) -> None:
    """B's workers: their readers' sessions summed in B's one registration, one edge relay (on A:
    the publisher and one session from B), a path published on either worker claimed as B's."""
    a, b = cluster.a, cluster.b
    publisher = Publisher(a, "live/two", loop=True)
    readers = [pinned(b.port, b.rtp_port, worker, probe="clip.mp4") for worker in (0, 1)]
    try:
        for sock in readers:  # a reader on each of B's workers, TCP interleaved
            url = b.url("live/two")
            status, _, sdp = exchange(sock, f"DESCRIBE {url} RTSP/1.0\nCSeq: 11\n")
            assert status == 200 and b"a=control:trackID=0" in sdp
            transport = "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\n"
            status, headers, _ = exchange(sock, f"SETUP {url}/trackID=0 RTSP/1.0\nCSeq: 12\n{transport}")
            assert status == 200
            session = headers["session"].split(";")[0]
            assert exchange(sock, f"PLAY {url} RTSP/1.0\nCSeq: 13\nSession: {session}\n")[0] == 200
        wait_until(lambda: len(b.session_ids()) == 2, "a reader on each of B's workers")
        wait_until(lambda: (cluster.registration(b) or {}).get("load") == 2, "B registered with load 2")
        on_a = [s for s in a.api("sessions")["sessions"] if s["path"] == "live/two"]
        assert len(on_a) == 2, "the publisher and one edge relay for the whole of B"
        assert b.log().count("edge relay live/two <- ") == 1 and "relay live/two <- worker" in b.log()
    finally:
        for sock in readers:
            sock.close()
        publisher.stop()
    wait_until(lambda: (cluster.registration(b) or {}).get("load") == 0, "B's load back to 0")

    async def publish_on(worker: int, path: str) -> int:
        """ANNOUNCE on one of B's workers: the status C then gets for the same path."""
        sock = pinned(b.port, b.rtp_port, worker, probe="clip.mp4")
        try:
            sdp = f"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=raw\r\nt=0 0\r\n{OPUS}a=control:trackID=0\r\n"
            head = f"ANNOUNCE {b.url(path)} RTSP/1.0\nCSeq: 21\nContent-Type: application/sdp\n"
            status, headers, _ = exchange(sock, head, sdp.encode())
            assert status == 200
            refused = await _status(cluster.c, path)
            session = headers["session"].split(";")[0]
            teardown = f"TEARDOWN {b.url(path)} RTSP/1.0\nCSeq: 22\nSession: {session}\n"
            assert exchange(sock, teardown)[0] == 200
            return refused
        finally:
            sock.close()

    for worker in (0, 1):
        assert asyncio.run(publish_on(worker, f"live/onb{worker}")) == 403
        wait_until(lambda w=worker: asyncio.run(_status(cluster.c, f"live/onb{w}")) == 200, "B to release")


def test_second_publisher_on_another_node_is_refused(cluster: Cluster) -> None:
    a, c = cluster.a, cluster.c
    publisher = Publisher(a, "live/busy", loop=True)
    try:
        second = subprocess.run(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-i", str(c.media / "clip.mp4"),
             "-t", "1", "-c", "copy", "-f", "rtsp", c.url("live/busy")],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert second.returncode != 0 and "403" in second.stderr
        assert f"'live/busy' is already being published on rtsp://127.0.0.1:{a.port}" in c.log()
    finally:
        publisher.stop()
    # the path is free again once A's publisher left (A released its claim)
    wait_until(lambda: asyncio.run(_status(c, "live/busy")) == 200, "A to release live/busy")


async def _status(node: ServerProcess, path: str) -> int:
    """An ANNOUNCE's status; a session it made is torn down (which releases its claim)."""
    status, client = await announce(node, path)
    if status == 200:
        assert (await client.request("TEARDOWN", client.url(path))).status == 200
    await client.close()
    return status


async def _until_status(node: ServerProcess, path: str, status: int, what: str) -> None:
    deadline = time.monotonic() + 20
    while (got := await _status(node, path)) != status:
        assert time.monotonic() < deadline, f"timed out waiting for {what} (last {got})"
        await asyncio.sleep(0.1)


def test_three_nodes_announcing_one_path_at_once_one_wins(cluster: Cluster) -> None:
    async def scenario() -> None:
        for round_ in range(3):
            path = f"live/race{round_}"
            results = await asyncio.gather(
                *(announce(node, path) for node in (cluster.a, cluster.b, cluster.c))
            )
            assert sorted(status for status, _ in results) == [200, 403, 403]
            for status, client in results:
                if status == 200:
                    assert (await client.request("TEARDOWN", client.url(path))).status == 200
                await client.close()

    asyncio.run(scenario())


def test_redirect_mode_sends_readers_to_the_owner(cluster: Cluster) -> None:
    a, c = cluster.a, cluster.c

    async def scenario() -> None:
        status, publisher = await announce(a, "live/redirect")
        assert status == 200
        try:
            reader = await RawRtspClient("127.0.0.1", c.port).connect()
            response = await reader.request("DESCRIBE", reader.url("live/redirect"))
            assert response.status == 302
            assert response.headers["Location"] == a.url("live/redirect")
            await reader.close()
        finally:
            await publisher.request("TEARDOWN", publisher.url("live/redirect"))
            await publisher.close()

    asyncio.run(scenario())


def test_redis_killed_and_restarted_mid_run(cluster: Cluster) -> None:
    a, b, c, redis = cluster.a, cluster.b, cluster.c, cluster.redis
    publisher = Publisher(a, "live/steady", loop=True)

    async def scenario() -> None:
        reader = await play(b, "live/steady")
        await until(lambda: reader.received.rtp(0), "RTP on B")
        redis.kill()
        for node in (a, b, c):
            await asyncio.to_thread(
                wait_until, lambda n=node: "cluster: store unavailable" in n.log(), "nodes to notice"
            )
        before = len(reader.received.rtp(0))
        await until(lambda: len(reader.received.rtp(0)) > before + 50, "RTP still flowing on B without Redis")
        assert await _status(c, "live/new") == 503  # a claim nobody can verify
        probe = await RawRtspClient("127.0.0.1", c.port).connect()
        assert (await probe.request("DESCRIBE", probe.url("live/steady"))).status == 503
        await probe.close()
        assert "cannot verify that no other node publishes 'live/new'" in c.log()
        redis.start()  # empty: every node registers again, A claims live/steady again
        await until(lambda: cluster.registration(c) is not None, "C registered again")
        await until(lambda: cluster.registration(a) is not None, "A registered again")
        # meanwhile C refuses (503) rather than let a new publisher take live/steady from A
        await _until_status(c, "live/steady", 403, "A to claim live/steady again")
        await _until_status(c, "live/new", 200, "new publishers let in after the owners' re-claims")
        assert len(reader.received.rtp(0)) > before + 50 and not reader.received.got_bye(1)
        await reader.close()

    try:
        asyncio.run(scenario())
    finally:
        publisher.stop()
    assert "cluster: live/steady claimed again" in a.log()
    assert "live/steady is now published on" not in a.log()  # its publisher was never taken


def test_drain_marks_the_node_and_sends_new_players_elsewhere(cluster: Cluster) -> None:
    a, b, c = cluster.a, cluster.b, cluster.c
    subprocess.run(
        [sys.executable, "-m", "streamd.cli", "drain", "--grace", "60", "--api", b.http()],
        capture_output=True, timeout=30, check=True,
    )  # fmt: skip
    try:
        wait_until(lambda: (cluster.registration(b) or {}).get("draining"), "B marked draining in Redis")

        async def scenario() -> None:
            reader = await RawRtspClient("127.0.0.1", b.port).connect()
            response = await reader.request("DESCRIBE", reader.url("clip.mp4"))
            await reader.close()
            assert response.status == 302
            assert response.headers["Location"] in (a.url("clip.mp4"), c.url("clip.mp4"))

        asyncio.run(scenario())
    finally:
        subprocess.run(
            [sys.executable, "-m", "streamd.cli", "drain", "--cancel", "--api", b.http()],
            capture_output=True, timeout=30, check=True,
        )  # fmt: skip
    wait_until(lambda: not (cluster.registration(b) or {"draining": True})["draining"], "B not draining")


def test_origin_killed_readers_end_and_the_path_is_free_anywhere(cluster: Cluster, tmp_path: Path) -> None:
    a, b, c = cluster.a, cluster.b, cluster.c
    publisher = Publisher(a, "live/gone", loop=True)
    try:
        ffmpeg = subprocess.Popen(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", b.url("live/gone"),
             "-c", "copy", "-f", "null", "-"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        gst = gst_reader(c, "live/gone", tmp_path / "g.h264", tmp_path / "g.aac")
        for edge in (b, c):  # both edges pull from A, and a reader plays on each
            wait_until(lambda e=edge: _relay_online(e, "live/gone"), "an edge relay online", timeout=60)
            wait_until(lambda e=edge: len(e.session_ids()) == 1, "a reader playing on the edge", timeout=60)
        wait_until(
            lambda: (tmp_path / "g.h264").exists() and (tmp_path / "g.h264").stat().st_size, "gst data"
        )
        a.process.kill()  # SIGKILL: no BYE, no release; the claim expires on Redis's clock
        a.process.wait(10)
        # the edges see their upstream connection close: their readers get RTCP BYE, and end
        ffmpeg.wait(30)
        gst.wait(30)
    finally:
        publisher.stop()
    # A's claim expires on Redis's clock (3 heartbeats): then C may publish the path
    wait_until(lambda: asyncio.run(_status(c, "live/gone")) == 200, "the path free for C", timeout=30)
    # A's registration expires too: within a heartbeat of its claim (a kill between a heartbeat's
    # registration and its claim renewals leaves the registration the younger of the two)
    wait_until(lambda: cluster.registration(a) is None, "A's registration to expire", timeout=10)
    assert "edge relay live/gone" in b.log() and "offline (upstream closed the connection)" in b.log()


def _relay_online(node: ServerProcess, path: str) -> bool:
    return any(f"edge relay {path} <- " in line and "online" in line for line in node.log().splitlines())
