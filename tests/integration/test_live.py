"""Live paths: ffmpeg and GStreamer publish (ANNOUNCE/SETUP mode=record/RECORD over TCP and UDP),
players read at the live edge starting on a keyframe, what they get equals what was published,
many readers share one publisher, a slow reader harms nobody, publishers come and go."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from media import h265
from media.h264 import nal_type, split_annexb
from streamd.rtsp.headers import parse_transport
from tests.integration.chromium import CHROMIUM, PLAYED_SECONDS, chromium_tab
from tests.integration.conftest import ARTIFACTS, ServerProcess, free_udp_pair, need, start_server
from tests.integration.source import (
    comparable,
    complete_adts_frames,
    ffmpeg_copy,
    received_audio_frames,
    received_video_nals,
    source_audio_frames,
    source_video_nals,
)
from tests.mediagen import make_live_clip
from tests.rtsp_client import RawRtspClient
from tests.waiting import until, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    need("ffmpeg")
    media = tmp_path_factory.mktemp("live-media")
    make_live_clip(media / "clip.mp4")
    proc = start_server(media, tmp_path_factory.mktemp("live-server"))
    yield proc
    proc.stop()


def is_online(server: ServerProcess, path: str) -> bool:
    """Whether /api/v1/paths lists ``path`` (a live path is listed while it is published)."""
    return any(p["name"] == path for p in server.api("paths?limit=1000")["paths"])


def viewers(server: ServerProcess, path: str) -> int:
    (entry,) = [p for p in server.api("paths?limit=1000")["paths"] if p["name"] == path]
    return entry["viewers"]


class Publisher:
    """ffmpeg publishing the clip in real time (-re) until stopped."""

    def __init__(
        self,
        server: ServerProcess,
        path: str,
        transport: str = "tcp",
        file: Path | None = None,
        *,
        loop: bool = False,
    ) -> None:
        file = file or server.media / "clip.mp4"
        repeat = ["-stream_loop", "-1"] if loop else []
        # a previous publisher of the path has left (its path offline) before this one starts
        wait_until(lambda: not is_online(server, path), f"{path} offline before publishing")
        self.process = subprocess.Popen(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", *repeat, "-i", str(file),
             "-c", "copy", "-f", "rtsp", "-rtsp_transport", transport, server.url(path)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        wait_until(lambda: is_online(server, path), f"{path} online (published)")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def is_subsequence_start(got: list[bytes], source: list[bytes]) -> bool:
    """``got`` is a contiguous run of ``source``."""
    if not got:
        return False
    starts = [i for i, n in enumerate(source) if n == got[0]]
    return any(source[i : i + len(got)] == got for i in starts)


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_ffmpeg_publishes_and_readers_get_it_exactly(
    live_server: ServerProcess, tmp_path: Path, transport: str
) -> None:
    path = f"live/{transport}"
    publisher = Publisher(live_server, path, transport)
    try:
        video, audio = tmp_path / "v.h264", tmp_path / "a.aac"
        ffmpeg_copy(["-rtsp_transport", "tcp", "-i", live_server.url(path)], video, audio, 3)
    finally:
        publisher.stop()
    source = live_server.media / "clip.mp4"
    got = received_video_nals(video)
    assert nal_type(got[0]) == 5, "the reader starts on a keyframe"
    assert len(got) >= 50 and is_subsequence_start(got, source_video_nals(source))
    frames = received_audio_frames(audio)
    assert len(frames) >= 100 and is_subsequence_start(frames, source_audio_frames(source))


def test_h265_and_opus_published_are_read_bit_exact(live_server: ServerProcess, tmp_path: Path) -> None:
    """The other codecs a publisher's RTP is taken apart for: H.265 (RFC 7798) and Opus (RFC 7587)."""
    source = tmp_path / "hevc-opus.mkv"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=d=10:s=320x240:r=25",
         "-f", "lavfi", "-i", "sine=d=10:sample_rate=48000", "-c:v", "libx265",
         "-x265-params", "keyint=25:min-keyint=25:bframes=0:log-level=error", "-c:a", "libopus",
         "-y", str(source)],
        check=True, timeout=120,
    )  # fmt: skip
    with av.open(str(source)) as container:
        sent = {"video": [], "audio": []}
        for packet in container.demux():
            if packet.size:
                sent[packet.stream.type].append(bytes(packet))
    publisher = Publisher(live_server, "live/hevc", file=source)
    got: dict[str, list[bytes]] = {"video": [], "audio": []}
    try:
        with av.open(live_server.url("live/hevc"), options={"rtsp_transport": "tcp"}, timeout=30) as c:
            assert sorted(s.codec_context.name for s in c.streams) == ["hevc", "opus"]
            for packet in c.demux():
                if packet.size:
                    got[packet.stream.type].append(bytes(packet))
                if len(got["video"]) >= 60:
                    break
    finally:
        publisher.stop()

    def hevc_pictures(packets: list[bytes]) -> list[bytes]:  # parameter sets and SEI aside
        return [n for p in packets for n in split_annexb(p) if h265.nal_type(n) < 32]

    pictures = hevc_pictures(got["video"])
    assert h265.is_irap(pictures[0]) and is_subsequence_start(
        pictures,
        hevc_pictures([b"".join(b"\0\0\0\1" + n for n in _length_prefixed(p)) for p in sent["video"]]),
    )
    assert len(got["audio"]) >= 100 and is_subsequence_start(got["audio"], sent["audio"])


def _length_prefixed(data: bytes) -> list[bytes]:
    """NAL units of an hvcC/avcC-style (4-byte length) sample."""
    nals, pos = [], 0
    while pos + 4 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        nals.append(data[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return nals


def test_many_readers_one_slow_reader_and_publisher_leaving(live_server: ServerProcess) -> None:
    publisher = Publisher(live_server, "live/many")

    async def readers() -> None:
        async def reader(i: int) -> RawRtspClient:
            c = await RawRtspClient("127.0.0.1", live_server.port).connect()
            assert (await c.request("DESCRIBE", c.url("live/many"))).status == 200
            for t in (0, 1):
                await c.request(
                    "SETUP",
                    c.url(f"live/many/trackID={t}"),
                    {"Transport": f"RTP/AVP/TCP;unicast;interleaved={2 * t}-{2 * t + 1}"},
                )
            r = await c.request("PLAY", c.url("live/many"))
            assert r.status == 200 and r.headers["Range"] == "npt=now-"
            return c

        clients = await asyncio.gather(*(reader(i) for i in range(50)))
        # a reader that stops reading its socket: it must not hold anyone up
        slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", live_server.port)
        slow_writer.write(f"DESCRIBE {live_server.url('live/many')} RTSP/1.0\r\nCSeq: 1\r\n\r\n".encode())
        await asyncio.sleep(0.3)
        await slow_reader.read(65536)
        setup = (
            f"SETUP {live_server.url('live/many/trackID=0')} RTSP/1.0\r\nCSeq: 2\r\n"
            "Transport: RTP/AVP/TCP;interleaved=0-1\r\n\r\n"
        )
        slow_writer.write(setup.encode())
        await asyncio.sleep(0.3)
        session = (await slow_reader.read(65536)).decode().split("Session: ")[1].split(";")[0].split("\r")[0]
        slow_writer.write(
            f"PLAY {live_server.url('live/many')} RTSP/1.0\r\nCSeq: 3\r\nSession: {session}\r\n\r\n".encode()
        )
        await until(lambda: all(len(c.received.rtp(0)) > 30 for c in clients), "30 packets for every reader")
        for c in clients:
            video = [p for _, p in c.received.rtp(0)]
            assert len(video) > 30
            assert video[0].payload[0] & 0x1F in (5, 7, 24, 28), "starts on a keyframe"
            seqs = [p.sequence_number for p in video]
            assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(seqs))
        publisher.stop()  # the publisher leaves: every reader gets BYE, the path goes offline
        await until(lambda: all(c.received.got_bye(1) for c in clients), "BYE to every reader")
        probe = await RawRtspClient("127.0.0.1", live_server.port).connect()
        assert (await probe.request("DESCRIBE", probe.url("live/many"))).status == 404
        for c in [*clients, probe]:
            await c.close()
        slow_writer.close()

    try:
        asyncio.run(readers())
    finally:
        publisher.stop()


def test_second_publisher_is_refused_and_path_resumes(live_server: ServerProcess) -> None:
    first = Publisher(live_server, "live/busy")
    try:
        second = subprocess.run(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-i", str(live_server.media / "clip.mp4"),
             "-t", "1", "-c", "copy", "-f", "rtsp", live_server.url("live/busy")],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert second.returncode != 0 and "403" in second.stderr
    finally:
        first.stop()
    again = Publisher(live_server, "live/busy")  # a new publisher resumes the path
    try:
        with av.open(live_server.url("live/busy"), options={"rtsp_transport": "tcp"}, timeout=30) as c:
            frames = [f for _, f in zip(range(25), c.decode(video=0), strict=False)]
        assert len(frames) == 25 and frames[0].key_frame
    finally:
        again.stop()


def test_paths_outside_live_refuse_publishers(live_server: ServerProcess) -> None:
    result = subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(live_server.media / "clip.mp4"), "-t", "1",
         "-c", "copy", "-f", "rtsp", live_server.url("clip2.mp4")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode != 0 and "403" in result.stderr


def test_gstreamer_and_pyav_read_a_live_path_bit_exact(live_server: ServerProcess, tmp_path: Path) -> None:
    """GStreamer's depayloader and PyAV's demuxer hand back the published NAL units and AAC
    frames exactly; GStreamer also decodes the picture."""
    need("gst-launch-1.0")
    publisher = Publisher(live_server, "live/gst")
    source = live_server.media / "clip.mp4"
    try:
        raw, audio, yuv = tmp_path / "g.h264", tmp_path / "g.aac", tmp_path / "g.yuv"
        pipeline = (
            f"rtspsrc name=src location={live_server.url('live/gst')} protocols=tcp "
            f"src. ! rtph264depay ! video/x-h264,stream-format=byte-stream ! tee name=t "
            f"t. ! queue ! filesink location={raw} "
            f"t. ! queue ! h264parse ! avdec_h264 ! videoconvert ! video/x-raw,format=I420 "
            f"! filesink location={yuv} "
            f"src. ! rtpmp4gdepay ! aacparse ! audio/mpeg,stream-format=adts ! filesink location={audio}"
        )
        proc = subprocess.Popen(["gst-launch-1.0", "-q", "-e", *pipeline.split()])
        with av.open(live_server.url("live/gst"), options={"rtsp_transport": "tcp"}, timeout=30) as c:
            packets = [p for _, p in zip(range(60), c.demux(video=0), strict=False) if p.size]
        time.sleep(max(0.0, 4 - 2.4))
        proc.send_signal(2)
        proc.wait(15)
    finally:
        publisher.stop()
    assert yuv.stat().st_size // (320 * 240 * 3 // 2) >= 40
    nals = source_video_nals(source)
    got = received_video_nals(raw)
    assert nal_type(got[0]) == 5 and len(got) >= 40 and is_subsequence_start(got, nals)
    frames = received_audio_frames(audio)
    assert len(frames) >= 80 and is_subsequence_start(frames, source_audio_frames(source))
    pyav_nals = comparable([n for p in packets for n in split_annexb(bytes(p))])
    first_picture = next(n for n in pyav_nals if nal_type(n) in (1, 5))  # (after x264's SEI, if any)
    assert nal_type(first_picture) == 5 and is_subsequence_start(pyav_nals, nals)


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_gstreamer_publishes_with_rtspclientsink(
    live_server: ServerProcess, tmp_path: Path, protocol: str
) -> None:
    """GStreamer as the publisher: H.264 is taken apart and rebuilt, and its MP4A-LATM audio is
    taken apart too and served as mpeg4-generic; readers get both bit-exact."""
    need("gst-launch-1.0")
    path = f"live/gst-{protocol}"
    pipeline = (
        f"filesrc location={live_server.media / 'clip.mp4'} ! qtdemux name=d "
        f"d.video_0 ! queue ! h264parse ! rtspclientsink name=s location={live_server.url(path)} "
        f"protocols={protocol} d.audio_0 ! queue ! aacparse ! s."
    )
    publisher = subprocess.Popen(["gst-launch-1.0", "-q", *pipeline.split()], stdout=subprocess.DEVNULL)
    try:
        wait_until(lambda: is_online(live_server, path), f"{path} online (published)")
        describe = subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0",
             live_server.url(path)],
            capture_output=True, text=True, timeout=20, check=True,
        )  # fmt: skip
        assert sorted(describe.stdout.split()) == ["aac", "h264"]
        with av.open(live_server.url(path), options={"rtsp_transport": "tcp"}, timeout=30) as c:
            frames = [f for _, f in zip(range(20), c.decode(video=0), strict=False)]
        assert len(frames) == 20 and frames[0].key_frame and frames[0].width == 320
        video, audio = tmp_path / "v.h264", tmp_path / "a.aac"
        ffmpeg_copy(["-rtsp_transport", "tcp", "-i", live_server.url(path)], video, audio, 2)
    finally:
        publisher.terminate()
        publisher.wait(10)
    source = live_server.media / "clip.mp4"
    got = received_video_nals(video)
    assert len(got) >= 20 and is_subsequence_start(got, source_video_nals(source))
    aac = received_audio_frames(audio)
    assert len(aac) >= 50 and is_subsequence_start(aac, source_audio_frames(source))


def test_live_paths_show_on_the_web_side(live_server: ServerProcess) -> None:
    import json
    import urllib.request

    publisher = Publisher(live_server, "live/web")
    try:
        page = urllib.request.urlopen(live_server.http(""), timeout=30).read().decode()
        assert "live/web" in page
        paths = json.loads(urllib.request.urlopen(live_server.http("api/v1/paths"), timeout=30).read())
        entry = next(p for p in paths["paths"] if p["name"] == "live/web")
        assert entry["live"] and sorted(entry["codecs"]) == ["aac", "h264"]
        sdp = urllib.request.urlopen(live_server.http("sdp/live/web"), timeout=30).read().decode()
        assert f"a=control:{live_server.url('live/web')}/trackID=0" in sdp
    finally:
        publisher.stop()


def test_fifty_udp_readers_each_get_every_packet(live_server: ServerProcess) -> None:
    publisher = Publisher(live_server, "live/udp50")

    class Receiver(asyncio.DatagramProtocol):
        def __init__(self) -> None:
            self.packets: list[bytes] = []
            self.server_rtp = live_server.rtp_port  # with --workers: the SETUP reply's (rtp_port + 2 k)

        def datagram_received(self, data: bytes, addr: tuple) -> None:
            if addr[1] == self.server_rtp:  # not what another test's server still sends here
                self.packets.append(data)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        readers = []
        for _ in range(50):
            port = free_udp_pair()
            rtp, receiver = await loop.create_datagram_endpoint(Receiver, local_addr=("127.0.0.1", port))
            rtcp, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=("127.0.0.1", port + 1)
            )
            c = await RawRtspClient("127.0.0.1", live_server.port).connect()
            assert (await c.request("DESCRIBE", c.url("live/udp50"))).status == 200
            ports = f"{rtp.get_extra_info('sockname')[1]}-{rtcp.get_extra_info('sockname')[1]}"
            transport = f"RTP/AVP;unicast;client_port={ports}"
            setup = await c.request("SETUP", c.url("live/udp50/trackID=0"), {"Transport": transport})
            assert setup.status == 200
            server_port = parse_transport(setup.headers["Transport"])[0].server_port
            assert server_port is not None
            receiver.server_rtp = server_port[0]
            assert (await c.request("PLAY", c.url("live/udp50"))).status == 200
            readers.append((c, receiver, rtp, rtcp))
        await until(lambda: all(len(r.packets) > 30 for _, r, _, _ in readers), "30 packets for every reader")
        for c, receiver, rtp, rtcp in readers:
            seqs = [int.from_bytes(p[2:4], "big") for p in receiver.packets]
            assert len(seqs) > 30
            assert receiver.packets[0][12] & 0x1F in (5, 7, 24, 28), "starts on a keyframe"
            assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(seqs)), "no loss, no reordering"
            await c.request("TEARDOWN", c.url("live/udp50"))
            await c.close()
            rtp.close()
            rtcp.close()

    try:
        asyncio.run(run())
    finally:
        publisher.stop()


async def raw_publisher(server: ServerProcess, path: str, media: str) -> RawRtspClient:
    """A publisher of ``media`` (SDP m= and a= lines, one track, trackID=0) over TCP, recording."""
    c = await RawRtspClient("127.0.0.1", server.port).connect()
    sdp = f"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=raw\r\nt=0 0\r\n{media}a=control:trackID=0\r\n"
    announce = await c.request("ANNOUNCE", c.url(path), {"Content-Type": "application/sdp"}, sdp.encode())
    assert announce.status == 200
    transport = {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record"}
    assert (await c.request("SETUP", c.url(f"{path}/trackID=0"), transport)).status == 200
    assert (await c.request("RECORD", c.url(path))).status == 200
    return c


def test_publisher_pause_takes_the_path_offline_until_record(live_server: ServerProcess) -> None:
    """GStreamer's rtspclientsink sends PAUSE at end of stream and stays connected: the path goes
    offline then (readers get BYE, DESCRIBE 404), and RECORD on the same session resumes it."""
    path = "live/paused"

    async def scenario() -> None:
        opus = "m=audio 0 RTP/AVP 96\r\na=rtpmap:96 opus/48000/2\r\n"
        publisher = await raw_publisher(live_server, path, opus)
        reader = await RawRtspClient("127.0.0.1", live_server.port).connect()
        assert (await reader.request("DESCRIBE", reader.url(path))).status == 200
        await reader.request(
            "SETUP", reader.url(f"{path}/trackID=0"), {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"}
        )
        assert (await reader.request("PLAY", reader.url(path))).status == 200

        assert (await publisher.request("PAUSE", publisher.url(path))).status == 200
        await until(lambda: reader.received.got_bye(1), "BYE to the readers of a paused publisher")
        probe = await RawRtspClient("127.0.0.1", live_server.port).connect()
        assert (await probe.request("DESCRIBE", probe.url(path))).status == 404
        assert not is_online(live_server, path)

        assert (await publisher.request("RECORD", publisher.url(path))).status == 200
        assert (await probe.request("DESCRIBE", probe.url(path))).status == 200
        for c in (publisher, reader, probe):
            await c.close()

    asyncio.run(scenario())


def test_live_path_in_the_browser_fallback_is_bit_exact_and_ends_with_the_publisher(
    live_server: ServerProcess, tmp_path: Path
) -> None:
    """/mp4/live/... streams the path as fragmented MP4 from a keyframe: ffmpeg reading it gets
    the published NAL units and AAC frames unchanged, and the response ends when the publisher
    leaves. The index and watch pages link to it."""
    path = "live/web"
    publisher = Publisher(live_server, path)
    try:
        index = urllib.request.urlopen(live_server.http(), timeout=30).read().decode()
        assert f'href="/watch/{path}"' in index
        watch = urllib.request.urlopen(live_server.http(f"watch/{path}"), timeout=30).read().decode()
        assert f'src="/mp4/{path}"' in watch and "original file" not in watch
        video, audio = tmp_path / "v.h264", tmp_path / "a.aac"
        reader = subprocess.Popen(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", live_server.http(f"mp4/{path}"),
             "-map", "0:v", "-c", "copy", "-f", "h264", "-flush_packets", "1", "-y", str(video),
             "-map", "0:a", "-c", "copy", "-f", "adts", "-flush_packets", "1", "-y", str(audio)],
            stderr=subprocess.PIPE,
        )  # fmt: skip
        # the browser counts as a viewer of the path while it reads
        wait_until(lambda: viewers(live_server, path) >= 1, "the browser fallback to count as a viewer")
        wait_until(lambda: complete_adts_frames(audio) >= 120, "120 AAC frames through /mp4")
        assert reader.poll() is None, "the stream lasts while the path is published"
    finally:
        publisher.stop()
    _, errors = reader.communicate(timeout=15)  # ends by itself: the path went offline
    assert reader.returncode == 0, errors.decode(errors="replace")
    source = live_server.media / "clip.mp4"
    got = received_video_nals(video)
    assert len(got) >= 50 and is_subsequence_start(got, source_video_nals(source))
    first = next(n for n in split_annexb(video.read_bytes()) if nal_type(n) not in (6, 9))  # SEI, AUD
    assert nal_type(first) in (5, 7), "starts on a keyframe"
    aac = received_audio_frames(audio)
    assert len(aac) >= 100 and is_subsequence_start(aac, source_audio_frames(source))


async def test_chromium_plays_a_live_path(live_server: ServerProcess, tmp_path: Path) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip("chromium is not installed (scripts/test installs it)")
    path = "live/chromium"
    publisher = await asyncio.to_thread(Publisher, live_server, path, loop=True)  # however slow Chromium is
    try:
        async with chromium_tab(tmp_path) as tab:
            await tab.call("Page.navigate", url=live_server.http())
            await tab.wait_for(f"!!document.querySelector('a.watch[href=\"/watch/{path}\"]')")
            await tab.evaluate(f"document.querySelector('a.watch[href=\"/watch/{path}\"]').click()")
            state = await tab.wait_for(PLAYED_SECONDS.format(2), timeout=30)
            await tab.screenshot(ARTIFACTS / "live-watch-page.png")
            assert state["error"] is None, state
            assert state["t"] > 2 and state["w"] == 320, state
    finally:
        publisher.stop()


def test_browser_fallback_of_a_path_with_nothing_mp4_can_carry_is_415(live_server: ServerProcess) -> None:
    path = "live/pcmu"

    async def scenario() -> None:
        publisher = await raw_publisher(live_server, path, "m=audio 0 RTP/AVP 0\r\n")  # PCMU: relayed as is
        with pytest.raises(urllib.error.HTTPError) as refused:
            await asyncio.to_thread(urllib.request.urlopen, live_server.http(f"mp4/{path}"), timeout=30)
        assert refused.value.code == 415 and "no track MP4 can carry" in refused.value.read().decode()
        await publisher.close()

    asyncio.run(scenario())
