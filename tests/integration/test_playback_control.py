"""Issue 4: Range seeks and ends, PAUSE/resume, Scale and Speed, looping, keep-alive by RTCP,
sender-report sync, receiver-report statistics, GET/SET_PARAMETER, many independent sessions.

Real players where they can drive it (ffmpeg -ss, PyAV seek, GStreamer seek), a raw client for the rest.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import shutil
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import av
import pytest
from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket, RtcpSrPacket

from media.h264 import nal_type
from media.probe import probe
from media.reader import MediaReader
from streamd.rtp.clock import ntp_middle32, ntp_to_unix
from streamd.rtsp.headers import parse_rtp_info
from tests.integration.conftest import (
    BFRAMES_SECONDS,
    SHORT_TIMEOUT_TOML,
    ServerProcess,
    need,
    start_server,
    udp_pair,
)
from tests.integration.source import comparable, received_video_nals
from tests.rtsp_client import RawRtspClient, ticks_after
from tests.waiting import until

pytestmark = pytest.mark.integration

TCP = "RTP/AVP/TCP;unicast;interleaved={}-{}"
HERE = Path(__file__).parent


async def session(
    server: ServerProcess, path: str = "ten.mp4", tracks: tuple[int, ...] = (0, 1)
) -> RawRtspClient:
    c = await RawRtspClient("127.0.0.1", server.port).connect()
    assert (await c.request("DESCRIBE", c.url(path))).status == 200
    for i in tracks:
        r = await c.request(
            "SETUP", c.url(f"{path}/trackID={i}"), {"Transport": TCP.format(2 * i, 2 * i + 1)}
        )
        assert r.status == 200, r
    return c


async def wait_bye(c: RawRtspClient, channel: int, seconds: float = 20) -> bool:
    for _ in range(int(seconds * 10)):
        if c.received.got_bye(channel):
            return True
        await asyncio.sleep(0.1)
    return False


def npt_start(range_header: str) -> Fraction:
    return Fraction(range_header.removeprefix("npt=").split("-")[0])


async def test_range_seek_starts_at_keyframe_with_matching_rtp_info(server: ServerProcess) -> None:
    c = await session(server)
    r = await c.request("PLAY", c.url("ten.mp4"), {"Range": "npt=3.5-"})
    assert r.status == 200
    assert npt_start(r.headers["Range"]) == 3  # the keyframe at or before 3.5 s
    info = parse_rtp_info(r.headers["RTP-Info"])
    first = (await until(lambda: c.received.rtp(0), "video packets"))[0][1]
    assert first.sequence_number == info[0].seq
    assert 0 <= ticks_after(first.timestamp, info[0].rtptime) <= 3600  # within a frame of the Range start
    assert first.payload[0] & 0x1F in (5, 7, 24)  # IDR, SPS, or a STAP-A starting with SPS/PPS
    await c.request("TEARDOWN", c.url("ten.mp4"))
    await c.close()


async def test_hh_mm_ss_range_and_out_of_range(server: ServerProcess) -> None:
    c = await session(server)
    assert (await c.request("PLAY", c.url("ten.mp4"), {"Range": "npt=100-"})).status == 457
    assert (await c.request("PLAY", c.url("ten.mp4"), {"Range": "npt=5-2"})).status == 457
    r = await c.request("PLAY", c.url("ten.mp4"), {"Range": "npt=00:00:02.000-"})
    assert r.status == 200 and npt_start(r.headers["Range"]) == 2
    await c.request("TEARDOWN", c.url("ten.mp4"))
    await c.close()


async def test_range_end_stops_there_and_sends_bye(server: ServerProcess) -> None:
    c = await session(server)
    r = await c.request("PLAY", c.url("ten.mp4"), {"Range": "npt=1-2.5"})
    assert r.headers["Range"] == "npt=1-2.5"
    assert await wait_bye(c, 1), "BYE at the range end"
    packets = c.received.rtp(0)
    span = ((packets[-1][1].timestamp - packets[0][1].timestamp) % 2**32) / 90000
    assert 1.3 <= span < 1.5  # frames from 1.0 up to (not including) 2.5 s
    wall = packets[-1][0] - packets[0][0]
    assert wall >= span - 0.3  # paced, not a burst (how much later a loaded machine is: no bound)
    await c.close()


async def test_play_while_playing_reseeks_with_continuous_numbering(server: ServerProcess) -> None:
    c = await session(server, tracks=(0,))
    r1 = await c.request("PLAY", c.url("ten.mp4"))
    await until(lambda: len(c.received.rtp(0)) > 20, "packets before the re-seek")
    r2 = await c.request("PLAY", c.url("ten.mp4"), {"Range": "npt=6-"})
    assert npt_start(r2.headers["Range"]) == 6
    info2 = parse_rtp_info(r2.headers["RTP-Info"])[0]

    def after_reseek() -> int:
        seqs = [p.sequence_number for _, p in c.received.rtp(0)]
        return info2.seq in seqs and len(seqs) - seqs.index(info2.seq) > 10

    await until(after_reseek, "packets after the re-seek")
    packets = [p for _, p in c.received.rtp(0)]
    seqs = [p.sequence_number for p in packets]
    assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(seqs))
    after = next(i for i, p in enumerate(packets) if p.sequence_number == info2.seq)
    assert 0 <= ticks_after(packets[after].timestamp, info2.rtptime) <= 3600 + 900  # a frame + slack
    # RTP time goes on from where playback was, it does not jump to the file position
    step = (packets[after].timestamp - packets[after - 1].timestamp) % 2**32
    assert step < 90000 // 2
    assert parse_rtp_info(r1.headers["RTP-Info"])
    await c.request("TEARDOWN", c.url("ten.mp4"))
    await c.close()


async def test_scale_eight_sends_keyframes_at_an_eighth_spacing(server: ServerProcess) -> None:
    # beyond trick_play_all_frames_up_to (4 by default) only keyframes go; up to it every frame
    # (tests/integration/test_trick_play_rtp_info.py checks Scale 2 on a long GOP)
    c = await session(server)
    r = await c.request("PLAY", c.url("ten.mp4"), {"Range": "npt=0-", "Scale": "8"})
    assert r.status == 200 and r.headers["Scale"] == "8.0"
    await until(lambda: len({p.timestamp for _, p in c.received.rtp(0)}) >= 4, "4 keyframes")
    await c.request("PAUSE", c.url("ten.mp4"))
    video = c.received.rtp(0)
    frames = sorted({p.timestamp for _, p in video})
    assert 4 <= len(frames) <= 10  # keyframes only: media 0, 1, 2, 3, ... (ten in the file)
    wall = video[-1][0] - video[0][0]
    assert wall >= (len(frames) - 1) / 8 - 0.1  # one an eighth of a second: paced at 8 x real time
    steps = {(b - a) % 2**32 for a, b in itertools.pairwise(frames)}
    assert steps == {11250}  # one keyframe per media second = 1/8 s of RTP time (RFC 2326 12.34)
    assert not c.received.rtp(2), "no audio while Scale is not 1"
    assert (await c.request("PLAY", c.url("ten.mp4"), {"Scale": "-1"})).status == 456
    await c.request("TEARDOWN", c.url("ten.mp4"))
    await c.close()


async def test_speed_two_delivers_faster_with_unchanged_timestamps(server: ServerProcess) -> None:
    c = await session(server, tracks=(0,))
    r = await c.request("PLAY", c.url("ten.mp4"), {"Range": "npt=0-4", "Speed": "2"})
    assert r.headers["Speed"] == "2.0"
    assert await wait_bye(c, 1)
    video = c.received.rtp(0)
    frames = sorted({p.timestamp for _, p in video})
    assert {(b - a) % 2**32 for a, b in itertools.pairwise(frames)} == {3600}  # 25 fps spacing kept
    wall = video[-1][0] - video[0][0]
    # 4 s of media in 2 s: paced (not a burst), and faster than real time even on a loaded machine
    assert 1.7 <= wall < 3.5, wall
    await c.close()


async def test_get_and_set_parameter(server: ServerProcess) -> None:
    c = await session(server)
    started = time.monotonic()
    await c.request("PLAY", c.url("ten.mp4"), {"Range": "npt=2-"})
    await until(lambda: len(c.received.rtp(0)) > 10, "video packets")
    r = await c.request("GET_PARAMETER", c.url("ten.mp4"), body=b"position\r\nduration\r\nscale\r\n")
    elapsed = time.monotonic() - started
    assert r.status == 200 and r.headers["Content-Type"] == "text/parameters"
    values = dict(line.split(": ") for line in r.body.decode().splitlines())
    assert 2.0 < float(values["position"]) <= 2.0 + elapsed + 0.3  # where playback is now
    assert values["duration"] == "10" and values["scale"] == "1.0"
    assert (await c.request("GET_PARAMETER", c.url("ten.mp4"), body=b"bitrate\r\n")).status == 451
    assert (await c.request("SET_PARAMETER", c.url("ten.mp4"), body=b"position: 3\r\n")).status == 458
    assert (await c.request("SET_PARAMETER", c.url("ten.mp4"), body=b"volume: 3\r\n")).status == 451
    assert (await c.request("SET_PARAMETER", c.url("ten.mp4"))).status == 200
    await c.request("TEARDOWN", c.url("ten.mp4"))
    await c.close()


async def test_per_track_teardown_keeps_the_rest(server: ServerProcess) -> None:
    c = await session(server)
    await c.request("PLAY", c.url("ten.mp4"))
    await until(lambda: c.received.rtp(0) and c.received.rtp(2), "video and audio packets")
    r = await c.request("TEARDOWN", c.url("ten.mp4/trackID=1"))
    assert r.status == 200 and "Session" in r.headers
    assert await wait_bye(c, 3), "the torn-down track says BYE"
    before = len(c.received.rtp(0))
    audio_before = len(c.received.rtp(2))
    await until(lambda: len(c.received.rtp(0)) > before + 10, "video to go on")
    assert len(c.received.rtp(2)) == audio_before
    await c.request("TEARDOWN", c.url("ten.mp4"))
    await c.close()


async def test_sender_reports_sync_audio_and_video(server: ServerProcess) -> None:
    """The NTP time each track's SR implies for media time 0 agrees across tracks within 10 ms."""
    c = await session(server)
    r = await c.request("PLAY", c.url("ten.mp4"))
    info = parse_rtp_info(r.headers["RTP-Info"])

    def sender_reports(channel: int) -> list[RtcpSrPacket]:
        return [p for _, p in c.received.rtcp(channel) if isinstance(p, RtcpSrPacket)]

    # the first SR comes at once, the next after the RTCP interval
    await until(lambda: len(sender_reports(1)) >= 2 and len(sender_reports(3)) >= 2, "two SRs per track")
    implied = {}
    for track, channel, clock in ((0, 1, 90000), (1, 3, 48000)):
        zero_rtp = info[track].rtptime  # RTP-Info: the RTP timestamp of the Range start, npt 0
        srs = [p for _, p in c.received.rtcp(channel) if isinstance(p, RtcpSrPacket)]
        assert len(srs) >= 2, f"sender reports on track {track}"
        implied[track] = [
            ntp_to_unix(sr.sender_info.ntp_timestamp)
            - ((sr.sender_info.rtp_timestamp - zero_rtp) % 2**32) / clock
            for sr in srs
        ]
    for v, a in zip(implied[0], implied[1], strict=False):
        assert abs(v - a) < 0.010
    await c.request("TEARDOWN", c.url("ten.mp4"))
    await c.close()


async def test_receiver_reports_become_statistics(server: ServerProcess) -> None:
    """A client reporting known loss, jitter and delay: the server's figures match."""
    rtp, rtcp = udp_pair()
    rtcp.setblocking(False)
    c = await RawRtspClient("127.0.0.1", server.port).connect()
    await c.request("DESCRIBE", c.url("ten.mp4"))
    ports = f"{rtp.getsockname()[1]}-{rtcp.getsockname()[1]}"
    r = await c.request(
        "SETUP", c.url("ten.mp4/trackID=0"), {"Transport": f"RTP/AVP;unicast;client_port={ports}"}
    )
    ssrc = int(r.headers["Transport"].split("ssrc=")[1].split(";")[0], 16)
    # RTCP goes where the SETUP reply says, as real clients send it (one port pair per worker)
    server_rtcp = int(r.headers["Transport"].split("server_port=")[1].split(";")[0].split("-")[1])
    await c.request("PLAY", c.url("ten.mp4"))
    loop = asyncio.get_running_loop()
    from streamd.rtp.rtcp import parse_compound

    async def our_sender_report() -> RtcpSrPacket:
        """Our stream's first SR. The port pair may have been an earlier test's: a session of
        that test still sending to it is another sender, whose reports a client ignores."""
        while True:
            data = await loop.sock_recv(rtcp, 2000)
            for packet in parse_compound(data):
                if isinstance(packet, RtcpSrPacket) and packet.ssrc == ssrc:
                    return packet

    sr = await asyncio.wait_for(our_sender_report(), 20)
    await asyncio.sleep(0.2)
    report = RtcpRrPacket(
        ssrc=0x1234,
        reports=[
            RtcpReceiverInfo(
                ssrc=ssrc, fraction_lost=64, packets_lost=12, highest_sequence=100, jitter=900,
                lsr=ntp_middle32(sr.sender_info.ntp_timestamp), dlsr=int(0.2 * 65536),
            )
        ],
    )  # fmt: skip
    rtcp.sendto(bytes(report), ("127.0.0.1", server_rtcp))

    def reception() -> dict | None:
        (mine,) = [s for s in server.api("sessions")["sessions"] if s["id"] == c.session]
        stats = mine["tracks"][0]["rtcp"]
        return stats if stats["reports"] else None

    stats = await until(reception, "the receiver report in /api/v1/sessions")
    assert (stats["fraction_lost"], stats["cumulative_lost"], stats["jitter_ms"]) == (0.25, 12, 10.0)
    assert 0 <= stats["rtt_ms"] < 100  # ~0.2 s since the SR minus the 0.2 s the report says it held it
    await c.request("TEARDOWN", c.url("ten.mp4"))
    await until(lambda: c.session not in server.session_ids(), "the session to end")
    # the end-of-session line sums it up for the operator
    line = next(x for x in server.log().splitlines() if f"session {c.session} ended" in x)
    assert "loss 25.0% (12 total), jitter 10.0 ms, rtt" in line
    await c.close()
    rtp.close()
    rtcp.close()


@pytest.mark.serial  # the first packet after PLAY within the pacer's slack
async def test_hundred_sessions_seek_and_pause_independently(server: ServerProcess) -> None:
    rng = random.Random(7)

    async def one(i: int) -> None:
        c = await session(server, tracks=(0,))
        start = rng.choice([0, 2, 4, 6])
        r = await c.request("PLAY", c.url("ten.mp4"), {"Range": f"npt={start}-"})
        assert npt_start(r.headers["Range"]) == start
        infos = [parse_rtp_info(r.headers["RTP-Info"])[0]]
        await asyncio.sleep(rng.uniform(0.5, 1.5))
        await c.request("PAUSE", c.url("ten.mp4"))
        await asyncio.sleep(rng.uniform(0.1, 0.5))
        r = await c.request("PLAY", c.url("ten.mp4"))
        infos.append(parse_rtp_info(r.headers["RTP-Info"])[0])
        await asyncio.sleep(rng.uniform(0.5, 1.0))
        await c.request("TEARDOWN", c.url("ten.mp4"))
        packets = [p for _, p in c.received.rtp(0)]
        seqs = [p.sequence_number for p in packets]
        assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(seqs)), f"session {i}: gap"
        by_seq = {p.sequence_number: p for p in packets}
        for info in infos:
            offset = ticks_after(by_seq[info.seq].timestamp, info.rtptime)
            # the pause position lies inside a frame, and frames due within the pacer's slack
            # leave early: the first packet is the next frame, within a frame and 10 ms of it
            assert 0 <= offset <= 3600 + 900, f"session {i}: RTP-Info {offset} ticks from the first packet"
        await c.close()

    await asyncio.gather(*(one(i) for i in range(100)))
    assert "Traceback" not in server.log()


@pytest.fixture(scope="module")
def loop_server(media_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp_path = tmp_path_factory.mktemp("loop-server")
    config = tmp_path / "streamd.toml"
    config.write_text(SHORT_TIMEOUT_TOML + '[paths."bframes.mp4"]\nloop = true\n')
    proc = start_server(media_dir, tmp_path, "--config", str(config))
    yield proc
    proc.stop()


async def test_looping_path_plays_endlessly(loop_server: ServerProcess) -> None:
    c = await RawRtspClient("127.0.0.1", loop_server.port).connect()
    r = await c.request("DESCRIBE", c.url("bframes.mp4"))
    assert b"a=range:npt=0-\r\n" in r.body  # open-ended
    await c.request("SETUP", c.url("bframes.mp4/trackID=1"), {"Transport": TCP.format(0, 1)})
    await c.request("PLAY", c.url("bframes.mp4"))

    def span() -> float:
        audio = [p for _, p in c.received.rtp(0)]
        return ((audio[-1].timestamp - audio[0].timestamp) % 2**32) / 48000 if audio else 0

    deadline = time.monotonic() + 30
    while span() <= BFRAMES_SECONDS + 0.8:  # past the end of the file, with keep-alives (2 s timeout)
        assert time.monotonic() < deadline, "audio did not go on past the end of the file"
        assert (await c.request("GET_PARAMETER", c.url("bframes.mp4"))).status == 200
        await asyncio.sleep(0.5)
    assert not c.received.got_bye(1)
    audio = [p for _, p in c.received.rtp(0)]
    steps = [(b.timestamp - a.timestamp) % 2**32 for a, b in itertools.pairwise(audio)]
    # timestamps keep increasing across the loop point; the audio of a file rarely ends exactly
    # where its video does, so one step there may be shorter than a frame (never a jump back)
    assert all(0 < step <= 1024 for step in steps) and steps.count(1024) >= len(steps) - 2
    await c.request("TEARDOWN", c.url("bframes.mp4"))
    await c.close()


def test_ffmpeg_ss_starts_at_the_keyframe(server: ServerProcess, tmp_path: Path) -> None:
    need("ffmpeg")
    out = tmp_path / "seek.h264"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-ss", "4.5",
         "-i", server.url("ten.mp4"), "-map", "0:v", "-c", "copy", "-t", "2", "-f", "h264", "-y", str(out)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    got = received_video_nals(out)
    source = probe(server.media / "ten.mp4")
    with MediaReader(server.media / "ten.mp4", source, [0]) as reader:
        reader.seek(Fraction(4))
        keyframe = reader.read()
    assert keyframe is not None and keyframe.keyframe
    expected = comparable(list(keyframe.nal_units))
    assert got[: len(expected)] == expected  # the first frame received is the keyframe at 4 s
    assert nal_type(got[0]) in (5, 6)


def test_pyav_seek_on_rtsp_input(server: ServerProcess) -> None:
    with av.open(server.url("ten.mp4"), options={"rtsp_transport": "tcp"}, timeout=30) as container:
        stream = container.streams.video[0]
        for i, _frame in enumerate(container.decode(stream)):
            if i == 10:
                break
        container.seek(6 * av.time_base)  # PyAV -> PAUSE + PLAY with Range: npt=6-
        frames = [f for _, f in zip(range(5), container.decode(stream), strict=False)]
        times = [f.time for f in frames if f.time is not None]
    assert times and 5.9 <= times[0] <= 7.0, times
    assert "PLAY from npt=6" in server.log()


def test_gstreamer_seek(server: ServerProcess) -> None:
    python = shutil.which("python3", path="/usr/bin")
    if python is None or subprocess.run([python, "-c", "import gi"], capture_output=True).returncode:
        pytest.skip("Debian python3-gi is not installed (scripts/test installs it)")
    out = subprocess.run(
        [python, str(HERE / "gst_seek.py"), server.url("ten.mp4"), "6"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["seeked"] and result["error"] is None, out.stderr
    assert result["after"] >= 6.0 > result["before"]
    assert "PLAY from npt=6" in server.log()


async def test_pcm_is_paced_not_burst(server: ServerProcess) -> None:
    """A WAV read gives long chunks; their 20 ms-class packets still leave at their own times."""
    c = await session(server, "tone.wav", tracks=(0,))
    await c.request("PLAY", c.url("tone.wav"))
    assert await wait_bye(c, 1)
    packets = c.received.rtp(0)
    spread = packets[-1][0] - packets[0][0]
    media = ((packets[-1][1].timestamp - packets[0][1].timestamp) % 2**32) / 44100
    # not a burst; how much later than real time a loaded machine delivers is not bounded here
    assert len(packets) > 10 and spread >= media - 0.3, (spread, media)
    await c.close()
