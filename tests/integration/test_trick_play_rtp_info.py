"""Issue 13.3 (fast-forward on a long GOP moves) and 13.4 (RTP-Info rtptime is the Range start's).

Raw client over TCP: the oracle is the packets (timestamps, arrival times), not log text.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from fractions import Fraction

import pytest

from media.probe import probe
from media.reader import MediaReader
from streamd.rtsp.headers import parse_rtp_info
from tests import mediagen
from tests.integration.conftest import ServerProcess, start_server
from tests.rtsp_client import RawRtspClient

pytestmark = pytest.mark.integration

TCP = "RTP/AVP/TCP;unicast;interleaved={}-{}"


@pytest.fixture(scope="module")
def long_gop_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    media = tmp_path_factory.mktemp("long-gop")
    # a keyframe every 10 s (250 frames at 25 fps), AAC with its priming frame first
    mediagen.make_h264_aac_mp4(media / "gop10.mp4", seconds=12, bframes=False, size=(160, 120), gop=250)
    proc = start_server(media, tmp_path_factory.mktemp("server"))
    yield proc
    proc.stop()
    assert "Traceback" not in proc.log(), proc.log()


async def session(server: ServerProcess, path: str, tracks: tuple[int, ...]) -> RawRtspClient:
    c = await RawRtspClient("127.0.0.1", server.port).connect()
    assert (await c.request("DESCRIBE", c.url(path))).status == 200
    for i in tracks:
        r = await c.request(
            "SETUP", c.url(f"{path}/trackID={i}"), {"Transport": TCP.format(2 * i, 2 * i + 1)}
        )
        assert r.status == 200, r
    return c


async def test_scale_two_on_a_ten_second_gop_keeps_pictures_coming(long_gop_server: ServerProcess) -> None:
    c = await session(long_gop_server, "gop10.mp4", (0,))
    r = await c.request("PLAY", c.url("gop10.mp4"), {"Range": "npt=0-", "Scale": "2"})
    assert r.status == 200 and r.headers["Scale"] == "2.0"  # the Scale applied is the one asked for
    for _ in range(100):  # until 3 s of wall time have passed since the first picture
        video = c.received.rtp(0)
        if video and video[-1][0] - video[0][0] >= 3.0:
            break
        await asyncio.sleep(0.1)
    await c.request("PAUSE", c.url("gop10.mp4"))
    video = c.received.rtp(0)
    pictures: dict[int, float] = {}
    for arrival, packet in video:
        pictures.setdefault(packet.timestamp, arrival)
    arrivals = sorted(pictures.values())
    assert max(b - a for a, b in itertools.pairwise(arrivals)) <= 0.5, "a picture at least every 0.5 s"
    stamps = sorted(pictures)
    rtp_seconds = ((stamps[-1] - stamps[0]) % 2**32) / 90000
    wall = arrivals[-1] - arrivals[0]
    # RTP time runs at the normal rate (RFC 2326 12.34): media time is twice it, at ~2x wall time
    assert 1.5 <= 2 * rtp_seconds / wall <= 2.5, (rtp_seconds, wall)
    await c.request("TEARDOWN", c.url("gop10.mp4"))
    await c.close()


async def test_rtp_info_rtptime_is_the_range_start_on_every_track(long_gop_server: ServerProcess) -> None:
    """RFC 2326 12.33: rtptime is the RTP timestamp of the Range start; the AAC priming frame (its
    timestamp 1024 ticks earlier) still goes out first, and every packet's timestamp is its PTS
    relative to that start."""
    c = await session(long_gop_server, "gop10.mp4", (0, 1))
    r = await c.request("PLAY", c.url("gop10.mp4"), {"Range": "npt=0-"})
    assert r.headers["Range"].startswith("npt=0")
    info = parse_rtp_info(r.headers["RTP-Info"])
    for _ in range(50):
        if c.received.rtp(0) and c.received.rtp(2):
            break
        await asyncio.sleep(0.1)
    await c.request("TEARDOWN", c.url("gop10.mp4"))
    await c.close()
    source = probe(long_gop_server.media / "gop10.mp4")
    first_pts: dict[int, Fraction] = {}
    with MediaReader(long_gop_server.media / "gop10.mp4", source, [0, 1]) as reader:
        while len(first_pts) < 2 and (au := reader.read()) is not None:
            first_pts.setdefault(au.stream_index, au.pts * source.track(au.stream_index).time_base)
    assert first_pts[1] < 0, "the generated AAC track starts with a priming frame"
    origin = max(Fraction(0), source.track(0).start_time or Fraction(0))  # npt 0: the first video PTS
    for track, channel, clock in ((0, 0, 90000), (1, 2, 48000)):
        first = c.received.rtp(channel)[0][1]
        assert first.sequence_number == info[track].seq
        offset = (first.timestamp - info[track].rtptime + 2**31) % 2**32 - 2**31  # signed
        assert offset == round((first_pts[track] - origin) * clock), track


async def test_sender_reports_and_rtp_info_agree_on_media_time_zero(long_gop_server: ServerProcess) -> None:
    """With rtptime the Range start's timestamp, the NTP instant each track's SRs imply for npt 0
    agrees across tracks within 10 ms (what a live555-style player derives from RTP-Info)."""
    from aiortc.rtp import RtcpSrPacket

    from streamd.rtp.clock import ntp_to_unix

    c = await session(long_gop_server, "gop10.mp4", (0, 1))
    r = await c.request("PLAY", c.url("gop10.mp4"), {"Range": "npt=0-"})
    info = parse_rtp_info(r.headers["RTP-Info"])
    for _ in range(100):  # the first SR comes at once, the next after ~2-6 s
        if all(len([p for _, p in c.received.rtcp(ch) if isinstance(p, RtcpSrPacket)]) >= 2 for ch in (1, 3)):
            break
        await asyncio.sleep(0.1)
    await c.request("TEARDOWN", c.url("gop10.mp4"))
    await c.close()
    implied = {}
    for track, channel, clock in ((0, 1, 90000), (1, 3, 48000)):
        srs = [p for _, p in c.received.rtcp(channel) if isinstance(p, RtcpSrPacket)]
        assert len(srs) >= 2, f"sender reports on track {track}"
        implied[track] = [
            ntp_to_unix(sr.sender_info.ntp_timestamp)
            - ((sr.sender_info.rtp_timestamp - info[track].rtptime) % 2**32) / clock
            for sr in srs
        ]
    for v, a in zip(implied[0], implied[1], strict=False):
        assert abs(v - a) < 0.010
