"""Multicast on live paths, inside a network namespace of our own (the host's network never sees it).

ffmpeg publishes; ffmpeg (``-rtsp_transport udp_multicast``), raw RTSP clients with group sockets,
ffmpeg from the HTTP SDP link alone and GStreamer (``protocols=udp-mcast``) read; what they get
equals what was published; every reader of a path shares one send (one SSRC, one sequence).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import socket
import struct
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from aiortc.rtp import RtcpPacket, RtcpReceiverInfo, RtcpRrPacket, RtpPacket

from media.h264 import nal_type
from streamd.rtsp.headers import parse_transport
from tests.integration.conftest import SHORT_TIMEOUT_TOML, ServerProcess, need, start_server
from tests.integration.netns import NetNamespace, unavailable
from tests.integration.source import (
    ffmpeg_copy,
    received_audio_frames,
    received_video_nals,
    source_audio_frames,
    source_video_nals,
)
from tests.integration.test_live import Publisher, is_subsequence_start
from tests.mediagen import make_live_clip
from tests.rtsp_client import RawRtspClient
from tests.waiting import until, wait_until

pytestmark = pytest.mark.integration

RANGE = "239.255.42.0/28"
MULTICAST = "RTP/AVP;multicast"


@pytest.fixture(scope="module")
def netns() -> Iterator[NetNamespace]:
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    ns = NetNamespace(f"streamd-mc-{os.getpid()}")
    try:
        ns.create()
    except RuntimeError as exc:
        pytest.skip(f"cannot create a network namespace: {exc}")
    yield ns
    ns.delete()


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("ffmpeg")
    media = tmp_path_factory.mktemp("mc-media")
    make_live_clip(media / "clip.mp4")
    return media


def _serve(netns: NetNamespace, media: Path, tmp: Path, *flags: str, settings: str = "") -> ServerProcess:
    config = tmp / "streamd.toml"
    config.write_text(settings + '[paths."live/always"]\nmulticast = true\n')
    with netns.entered():  # free ports are picked and the listener is checked inside
        return start_server(
            media,
            tmp,
            "--config", str(config),
            "--multicast-range", RANGE,
            "--multicast-ttl", "1",
            "--multicast-interface", "127.0.0.1",
            *flags,
            prefix=netns.prefix,
        )  # fmt: skip


@pytest.fixture(scope="module")
def mc_server(
    netns: NetNamespace, clip_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    proc = _serve(netns, clip_dir, tmp_path_factory.mktemp("mc-server"), "--multicast-ports", "41000-41099")
    yield proc
    code = proc.stop()
    log = proc.log()
    assert "Traceback" not in log, log
    assert code == 0, log


@pytest.fixture(autouse=True)
def _inside(netns: NetNamespace) -> Iterator[None]:
    """Every test body (its sockets and the players it starts) runs in the namespace."""
    with netns.entered():
        yield


def _get(server: ServerProcess, path: str) -> str:
    return urllib.request.urlopen(server.http(path), timeout=30).read().decode()


def _api(server: ServerProcess, path: str) -> dict:
    return json.loads(_get(server, f"api/v1/{path}"))


def _group_socket(group: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind((group, port))
    membership = struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton("127.0.0.1"))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
    sock.setblocking(False)
    return sock


def _drain(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(65536))
        except BlockingIOError:
            return out


def _drain_into(sock: socket.socket, datagrams: list[bytes]) -> list[bytes]:
    """``datagrams`` with what arrived since added (collects across polls)."""
    datagrams += _drain(sock)
    return datagrams


def _has_bye(datagrams: list[bytes]) -> bool:
    return any(p.__class__.__name__ == "RtcpByePacket" for d in datagrams for p in RtcpPacket.parse(d))


def _play_to_files(args: list[str], video: Path, audio: Path) -> None:
    ffmpeg_copy(args, video, audio, 3, timeout=40)


def _play_each_stream(args: list[str], video: Path, audio: Path) -> None:
    """Two players at once, one per stream: ffmpeg 5.1 reading an SDP into two output files never
    ends the audio one when the streams' first sender reports shift its timestamps back a little."""
    players = []
    for kind, fmt, out in (("v", "h264", video), ("a", "adts", audio)):
        command = ["ffmpeg", "-nostdin", "-loglevel", "error", *args, "-t", "3", "-map", f"0:{kind}"]
        command += ["-c", "copy", "-f", fmt, "-y", str(out)]
        players.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    for player in players:
        _, err = player.communicate(timeout=40)
        assert player.returncode == 0, err


def _assert_exact(server: ServerProcess, video: Path, audio: Path) -> None:
    source = server.media / "clip.mp4"
    got = received_video_nals(video)
    assert nal_type(got[0]) == 5, "the player starts on a keyframe"
    assert len(got) >= 40 and is_subsequence_start(got, source_video_nals(source))
    frames = received_audio_frames(audio)
    assert len(frames) >= 80 and is_subsequence_start(frames, source_audio_frames(source))


def test_two_ffmpeg_readers_get_it_exactly_from_one_send(mc_server: ServerProcess, tmp_path: Path) -> None:
    publisher = Publisher(mc_server, "live/a")
    try:
        outputs = [(tmp_path / f"v{i}.h264", tmp_path / f"a{i}.aac") for i in (1, 2)]
        args = ["-rtsp_transport", "udp_multicast", "-i", mc_server.url("live/a")]
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda files: _play_to_files(args, *files), outputs))
    finally:
        publisher.stop()
    for video, audio in outputs:
        _assert_exact(mc_server, video, audio)
    log = mc_server.log()
    assert log.count("SETUP trackID=0 (h264) over UDP multicast 239.255.42.") == 2
    starts = [line for line in log.splitlines() if "multicast live/a -> " in line and ": sending (" in line]
    assert len(starts) == 1, "both players were served by one send"


async def _setup_multicast(server: ServerProcess, path: str) -> tuple[RawRtspClient, list]:
    c = await RawRtspClient("127.0.0.1", server.port).connect()
    assert (await c.request("DESCRIBE", c.url(path))).status == 200
    replies = []
    for t in (0, 1):
        r = await c.request("SETUP", c.url(f"{path}/trackID={t}"), {"Transport": MULTICAST})
        assert r.status == 200, r
        replies.append(parse_transport(r.headers["Transport"])[0])
    return c, replies


def test_two_readers_share_one_send(mc_server: ServerProcess) -> None:
    publisher = Publisher(mc_server, "live/b")

    async def scenario() -> None:
        with pytest.raises(urllib.error.HTTPError) as not_yet:
            _get(mc_server, "sdp/live/b?multicast=1")  # nothing is sent to the group yet
        assert not_yet.value.code == 404
        c1, first = await _setup_multicast(mc_server, "live/b")
        c2, second = await _setup_multicast(mc_server, "live/b")
        for a, b in zip(first, second, strict=True):
            assert a.cast == "multicast" and a.ttl == 1 and a.destination.startswith("239.255.42.")
            assert (a.destination, a.port, a.ssrc) == (b.destination, b.port, b.ssrc)
        group, (video_port, _), video_ssrc = first[0].destination, first[0].port, first[0].ssrc
        assert first[1].port[0] != video_port and video_port % 2 == 0
        rtp, rtcp = _group_socket(group, video_port), _group_socket(group, video_port + 1)
        try:
            for c in (c1, c2):
                assert (await c.request("PLAY", c.url("live/b"))).status == 200
            datagrams: list[bytes] = []
            await until(lambda: len(_drain_into(rtp, datagrams)) > 30, "30 packets at the group")
            packets = [RtpPacket.parse(d) for d in datagrams]
            assert {p.ssrc for p in packets} == {video_ssrc}
            seqs = [p.sequence_number for p in packets]
            assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(seqs)), "each packet once"
            assert packets[0].payload[0] & 0x1F in (5, 7, 24, 28), "the send starts on a keyframe"
            starts = [  # (with --workers, a worker whose reader is not at the sender mirrors the send)
                line
                for line in mc_server.log().splitlines()
                if "multicast live/b -> " in line and "sent by another worker" not in line
            ]
            assert len(starts) == 1 and ": sending (" in starts[0], "one send for both readers"
            (group_info,) = [g for g in _api(mc_server, "multicast")["groups"] if g["path"] == "live/b"]
            assert group_info["sending"] and group_info["rtsp_members"] == 2
            assert [t["ssrc"] for t in group_info["tracks"]] == [first[0].ssrc, first[1].ssrc]
            sessions = [s for s in _api(mc_server, "sessions")["sessions"] if s["path"] == "live/b"]
            readers = [s for s in sessions if s["transport"] == "UDP multicast"]
            assert len(readers) == 2 and all(s["tracks"][0]["ssrc"] == video_ssrc for s in readers)
            sdp = _get(mc_server, "sdp/live/b?multicast=1")
            assert f"c=IN IP4 {group}/1" in sdp and f"m=video {video_port} RTP/AVP" in sdp
            # a receiver report at the group's RTCP port is kept per receiver SSRC
            report = RtcpRrPacket(ssrc=0x5EED, reports=[RtcpReceiverInfo(video_ssrc, 3, 7, 0, 0, 0, 0)])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
                sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
                sender.sendto(bytes(report), (group, video_port + 1))

            def receivers_now() -> list[dict]:
                (info,) = [g for g in _api(mc_server, "multicast")["groups"] if g["path"] == "live/b"]
                return info["tracks"][0]["receivers"]

            receivers = await until(receivers_now, "the receiver report to be kept")
            assert [(r["ssrc"], r["cumulative_lost"]) for r in receivers] == [(0x5EED, 7)]
            # one reader leaving does not stop the send for the other
            assert (await c1.request("TEARDOWN", c1.url("live/b"))).status == 200
            _drain(rtp)
            after: list[bytes] = []
            await until(lambda: len(_drain_into(rtp, after)) > 5, "the send to go on for the other reader")
            assert not _has_bye(_drain(rtcp))
            # the last one pausing stops it: BYE to the group
            assert (await c2.request("PAUSE", c2.url("live/b"))).status == 200
            reports: list[bytes] = []
            await until(lambda: _has_bye(_drain_into(rtcp, reports)), "BYE at the group")
            _drain(rtp)
            await asyncio.sleep(0.5)
            assert _drain(rtp) == []
            assert (await c2.request("TEARDOWN", c2.url("live/b"))).status == 200
        finally:
            rtp.close()
            rtcp.close()
            await c1.close()
            await c2.close()

    try:
        asyncio.run(scenario())
    finally:
        publisher.stop()


def test_refusals(mc_server: ServerProcess) -> None:
    publisher = Publisher(mc_server, "live/c")

    async def scenario() -> None:
        c = await RawRtspClient("127.0.0.1", mc_server.port).connect()
        # on-demand files are unicast only
        assert (await c.request("DESCRIBE", c.url("clip.mp4"))).status == 200
        r = await c.request("SETUP", c.url("clip.mp4/trackID=0"), {"Transport": MULTICAST})
        assert r.status == 461
        # a foreign destination is refused; one inside our range gets the server's choice
        assert (await c.request("DESCRIBE", c.url("live/c"))).status == 200
        foreign = f"{MULTICAST};destination=224.9.9.9;port=5000-5001"
        assert (await c.request("SETUP", c.url("live/c/trackID=0"), {"Transport": foreign})).status == 403
        ours = f"{MULTICAST};destination=239.255.42.15;port=5000-5001"
        r = await c.request("SETUP", c.url("live/c/trackID=0"), {"Transport": ours})
        assert r.status == 200
        reply = parse_transport(r.headers["Transport"])[0]
        assert reply.port != (5000, 5001) and reply.destination.startswith("239.255.42.")
        # a session is all multicast or all unicast
        unicast = "RTP/AVP;unicast;client_port=6000-6001"
        assert (await c.request("SETUP", c.url("live/c/trackID=1"), {"Transport": unicast})).status == 461
        # an offer list takes the first usable alternative, multicast included
        c2 = await RawRtspClient("127.0.0.1", mc_server.port).connect()
        offers = f"RTP/SAVP;unicast;client_port=6000-6001,{MULTICAST}"
        r = await c2.request("SETUP", c2.url("live/c/trackID=0"), {"Transport": offers})
        assert r.status == 200 and ";multicast;" in r.headers["Transport"]
        await c.close()
        await c2.close()

    try:
        asyncio.run(scenario())
    finally:
        publisher.stop()
    assert "multicast is offered for live paths only" in mc_server.log()


def test_player_joins_from_the_sdp_link_alone(mc_server: ServerProcess, tmp_path: Path) -> None:
    publisher = Publisher(mc_server, "live/always")  # multicast = true: sent while online
    rtcp = None
    try:
        # (with --workers, the publisher's worker asks the parent for the group first)
        (group,) = wait_until(
            lambda: [g for g in _api(mc_server, "multicast")["groups"] if g["path"] == "live/always"],
            "the group sent",
        )
        (entry,) = [p for p in _api(mc_server, "paths")["paths"] if p["name"] == "live/always"]
        assert entry["multicast_sdp_url"] == "/sdp/live/always?multicast=1"
        assert "multicast sdp" in _get(mc_server, "")
        assert group["sending"] and group["rtsp_members"] == 0
        rtcp = _group_socket(group["group"], group["tracks"][0]["rtcp_port"])
        video, audio = tmp_path / "v.h264", tmp_path / "a.aac"
        sdp_url = mc_server.http("sdp/live/always?multicast=1")
        _play_each_stream(["-protocol_whitelist", "file,http,tcp,udp,rtp", "-i", sdp_url], video, audio)
        _drain(rtcp)
        publisher.stop()
        reports: list[bytes] = []
        wait_until(
            lambda: _has_bye(_drain_into(rtcp, reports)), "BYE at the group when the path goes offline"
        )
    finally:
        publisher.stop()
        if rtcp is not None:
            rtcp.close()
    _assert_exact(mc_server, video, audio)


def test_gstreamer_rtspsrc_udp_mcast(mc_server: ServerProcess, tmp_path: Path) -> None:
    need("gst-launch-1.0")
    publisher = Publisher(mc_server, "live/gst")
    try:
        out = tmp_path / "g.yuv"
        pipeline = (
            f"rtspsrc location={mc_server.url('live/gst')} protocols=udp-mcast ! rtph264depay ! h264parse "
            f"! avdec_h264 ! videoconvert ! video/x-raw,format=I420 ! filesink location={out}"
        )
        proc = subprocess.Popen(["gst-launch-1.0", "-q", "-e", *pipeline.split()])
        frame_size = 320 * 240 * 3 // 2
        wait_until(lambda: out.exists() and out.stat().st_size // frame_size >= 45, "45 decoded pictures")
        proc.send_signal(2)
        proc.wait(15)
        assert out.stat().st_size // (320 * 240 * 3 // 2) >= 40
    finally:
        publisher.stop()
    setups = [
        x
        for x in mc_server.log().splitlines()
        if "live/gst: session" in x and "SETUP trackID" in x and "streamd-worker" not in x  # (a relay)
    ]
    assert setups and all("over UDP multicast" in line for line in setups)


def test_exhausted_range_is_453(netns: NetNamespace, clip_dir: Path, tmp_path: Path) -> None:
    server = _serve(netns, clip_dir, tmp_path, "--multicast-ports", "41200-41201")  # one pair: one track
    try:
        publisher = Publisher(server, "live/full")
        try:

            async def scenario() -> int:
                c = await RawRtspClient("127.0.0.1", server.port).connect()
                r = await c.request("SETUP", c.url("live/full/trackID=0"), {"Transport": MULTICAST})
                await c.close()
                return r.status

            assert asyncio.run(scenario()) == 453
        finally:
            publisher.stop()
    finally:
        assert server.stop() == 0
    assert "no multicast group for it" in server.log()


def test_receiver_reports_keep_a_multicast_session_alive(
    netns: NetNamespace, clip_dir: Path, tmp_path: Path
) -> None:
    """A player that sends no RTSP keep-alive (VLC and other live555 players rely on RTCP) keeps
    its multicast session by the receiver reports it sends to the group; when they stop, the
    session times out."""
    server = _serve(
        netns, clip_dir, tmp_path, "--multicast-ports", "41300-41399", settings=SHORT_TIMEOUT_TOML
    )
    publisher = Publisher(server, "live/rr", loop=True)
    try:

        async def scenario() -> None:
            c, replies = await _setup_multicast(server, "live/rr")
            assert (await c.request("PLAY", c.url("live/rr"))).status == 200
            group, (port, _), ssrc = replies[0].destination, replies[0].port, replies[0].ssrc
            report = bytes(RtcpRrPacket(ssrc=0x5EED, reports=[RtcpReceiverInfo(ssrc, 0, 0, 1, 0, 0, 0)]))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
                for _ in range(8):  # 4 s of reports and nothing on RTSP: past the 2 s timeout
                    sock.sendto(report, (group, port + 1))
                    await asyncio.sleep(0.5)
            assert c.session in server.session_ids(), "the reports kept the session"
            # silence: gone 2 s after the last report
            await until(lambda: c.session not in server.session_ids(), "the silent session to time out")
            assert "timed out after 2 s" in server.log()
            await c.close()

        asyncio.run(scenario())
    finally:
        publisher.stop()
        assert server.stop() == 0
