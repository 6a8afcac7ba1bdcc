"""Protocol details players do not expose, checked with a raw client against the real server."""

from __future__ import annotations

import asyncio
import itertools
import os
from fractions import Fraction

import pytest

from sdp import parse as parse_sdp
from streamd.rtsp.headers import parse_rtp_info, parse_transport
from tests.integration.conftest import BFRAMES_SECONDS, ServerProcess, udp_pair
from tests.rtsp_client import RawRtspClient, ticks_after
from tests.waiting import until

pytestmark = pytest.mark.integration

TCP = "RTP/AVP/TCP;unicast;interleaved={}-{}"


async def client(server: ServerProcess) -> RawRtspClient:
    return await RawRtspClient("127.0.0.1", server.port).connect()


async def describe(c: RawRtspClient, path: str):
    response = await c.request("DESCRIBE", c.url(path), {"Accept": "application/sdp"})
    assert response.status == 200, response
    return response, parse_sdp(response.body.decode())


async def test_options_lists_exactly_what_is_implemented(server: ServerProcess) -> None:
    c = await client(server)
    response = await c.request("OPTIONS", c.url("test"))
    assert response.status == 200
    methods = {m.strip() for m in response.headers["Public"].split(",")}
    assert methods == {
        "OPTIONS", "DESCRIBE", "SETUP", "PLAY", "PAUSE", "TEARDOWN", "GET_PARAMETER", "SET_PARAMETER",
        "ANNOUNCE", "RECORD",
    }  # fmt: skip
    await c.close()


async def test_describe_sdp_skeleton(server: ServerProcess) -> None:
    c = await client(server)
    response, sd = await describe(c, "bframes.mp4")
    assert response.headers["Content-Type"] == "application/sdp"
    assert response.headers["Content-Base"] == c.url("bframes.mp4") + "/"
    assert sd.get("control") == "*"
    assert (sd.get("range") or "").startswith(f"npt=0-{BFRAMES_SECONDS}")
    kinds = [m.media for m in sd.media]
    assert kinds == ["video", "audio"]
    video, audio = sd.media
    assert video.get("rtpmap").endswith("H264/90000")
    fmtp = video.get("fmtp")
    assert "packetization-mode=1" in fmtp and "sprop-parameter-sets=" in fmtp and "profile-level-id=" in fmtp
    assert "mpeg4-generic/48000/2" in audio.get("rtpmap")
    assert [m.get("control") for m in sd.media] == ["trackID=0", "trackID=1"]
    await c.close()


async def test_errors_have_the_rfc_status(server: ServerProcess) -> None:
    c = await client(server)
    assert (await c.request("DESCRIBE", c.url("missing.mp4"))).status == 404
    assert (await c.request("DESCRIBE", c.url("../etc/passwd"))).status in (403, 404)
    assert (await c.request("DESCRIBE", c.url("notes.txt"))).status == 415
    assert (await c.request("PLAY", c.url("test"), {"Session": "nosuchsession"})).status == 454
    assert (await c.request("PLAY", c.url("test"))).status == 454
    assert (await c.request("FROB", c.url("test"))).status == 501
    assert (
        await c.request("SETUP", c.url("test/trackID=0"), {"Transport": "RTP/AVP;multicast"})
    ).status == 461
    response = await c.request(
        "SETUP",
        c.url("test/trackID=0"),
        {"Transport": "RTP/AVP;unicast;destination=10.1.2.3;client_port=5000-5001"},
    )
    assert response.status == 403
    # no CSeq: 400, and the connection carries on
    await c.send_raw(b"OPTIONS * RTSP/1.0\r\n\r\n")
    assert (await c.next_response()).status == 400
    # garbage request line: 400 with the CSeq echoed, connection still usable
    await c.send_raw(b"THIS IS NOT RTSP\r\nCSeq: 77\r\n\r\n")
    bad = await c.next_response()
    assert bad.status == 400
    assert (await c.request("OPTIONS", "*")).status == 200
    await c.close()


async def test_state_machine_statuses(server: ServerProcess) -> None:
    c = await client(server)
    await describe(c, "bframes.mp4")
    r = await c.request("SETUP", c.url("bframes.mp4/trackID=0"), {"Transport": TCP.format(0, 1)})
    assert r.status == 200
    spec = parse_transport(r.headers["Transport"])[0]
    assert spec.interleaved == (0, 1) and spec.ssrc is not None
    assert ";timeout=" in r.headers["Session"]
    # the aggregate URL of a two-track file cannot be SET UP
    assert (await c.request("SETUP", c.url("bframes.mp4"), {"Transport": TCP.format(2, 3)})).status == 459
    r = await c.request("PLAY", c.url("bframes.mp4"), {"Range": "npt=0-"})
    assert r.status == 200
    assert (
        await c.request("SETUP", c.url("bframes.mp4/trackID=1"), {"Transport": TCP.format(2, 3)})
    ).status == 455
    assert (await c.request("TEARDOWN", c.url("bframes.mp4"))).status == 200
    assert (await c.request("PLAY", c.url("bframes.mp4"))).status == 454
    await c.close()


async def setup_both_tcp(c: RawRtspClient, path: str) -> None:
    await describe(c, path)
    for i in range(2):
        r = await c.request(
            "SETUP", c.url(f"{path}/trackID={i}"), {"Transport": TCP.format(2 * i, 2 * i + 1)}
        )
        assert r.status == 200, r


async def test_rtp_info_matches_first_packets_and_bye_at_end(server: ServerProcess) -> None:
    c = await client(server)
    await setup_both_tcp(c, "bframes.mp4")
    r = await c.request("PLAY", c.url("bframes.mp4"), {"Range": "npt=0-"})
    assert r.headers["Range"].startswith("npt=0-")
    info = parse_rtp_info(r.headers["RTP-Info"])
    assert [e.url for e in info] == [c.url("bframes.mp4/trackID=0"), c.url("bframes.mp4/trackID=1")]
    for _ in range(100):
        if c.received.got_bye(1) and c.received.got_bye(3):
            break
        await asyncio.sleep(0.1)
    assert c.received.got_bye(1) and c.received.got_bye(3), "RTCP BYE at end of stream"
    for channel, entry in zip((0, 2), info, strict=True):
        packets = c.received.rtp(channel)
        first = packets[0][1]
        assert first.sequence_number == entry.seq
        # rtptime is the Range start's timestamp: the I-frame is at it, AAC's priming frame 1024 before
        assert -1024 <= ticks_after(first.timestamp, entry.rtptime) <= 3600
        seqs = [p.sequence_number for _, p in packets]
        assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(seqs)), "no gaps"
    # sender reports came with the data (SR + SDES CNAME, same CNAME for both tracks)
    srs = [p for _, p in c.received.rtcp(1) if type(p).__name__ == "RtcpSrPacket"]
    assert srs
    await c.request("TEARDOWN", c.url("bframes.mp4"))
    await c.close()


@pytest.mark.serial  # the first packet after PLAY within the pacer's slack
async def test_pause_resume_continues_without_gaps(server: ServerProcess) -> None:
    c = await client(server)
    await setup_both_tcp(c, "ten.mp4")
    await c.request("PLAY", c.url("ten.mp4"))

    def media_seconds() -> float:
        packets = c.received.rtp(0)
        return ((packets[-1][1].timestamp - packets[0][1].timestamp) % 2**32) / 90000 if packets else 0

    await until(lambda: media_seconds() >= 1, "a second of video")
    r = await c.request("PAUSE", c.url("ten.mp4"))
    assert r.status == 200
    paused_at = Fraction(r.headers["Range"].removeprefix("npt=").rstrip("-"))
    assert 1 <= paused_at <= media_seconds() + 0.2  # where the packets had got to
    await asyncio.sleep(0.3)
    before = len(c.received.rtp(0))
    await asyncio.sleep(0.7)  # (an absence: only time shows it)
    assert len(c.received.rtp(0)) == before, "nothing is sent while paused"
    r = await c.request("PLAY", c.url("ten.mp4"))
    assert r.status == 200
    assert r.headers["Range"].startswith(f"npt={r.headers['Range'].removeprefix('npt=').split('-')[0]}")
    info = parse_rtp_info(r.headers["RTP-Info"])

    def resumed_packets() -> bool:
        seqs = [p.sequence_number for _, p in c.received.rtp(0)]
        return info[0].seq in seqs and len(seqs) - seqs.index(info[0].seq) > 10

    await until(resumed_packets, "packets after the resume")
    packets = [p for _, p in c.received.rtp(0)]
    seqs = [p.sequence_number for p in packets]
    assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(seqs)), "sequence continues"
    resumed = next(p for p in packets if p.sequence_number == info[0].seq)
    assert 0 <= ticks_after(resumed.timestamp, info[0].rtptime) <= 3600 + 900  # next frame (+ slack)
    # the timestamps advanced by media time only (not the wall time spent paused)
    gap = (resumed.timestamp - packets[packets.index(resumed) - 1].timestamp) % 2**32
    assert gap <= 90000 * 0.2
    await c.request("TEARDOWN", c.url("ten.mp4"))
    await c.close()


@pytest.mark.serial  # asserts on arrival times
async def test_precise_pacing_with_raw_client(server: ServerProcess) -> None:
    """Packets leave at their media time: arrival spread is the media span (3 s of it), not less."""
    c = await client(server)
    await setup_both_tcp(c, "ten.mp4")
    await c.request("PLAY", c.url("ten.mp4"), {"Range": "npt=0-3"})
    await until(lambda: c.received.got_bye(1), "BYE at the end of the range")
    packets = c.received.rtp(0)
    spread = packets[-1][0] - packets[0][0]
    media = ((packets[-1][1].timestamp - packets[0][1].timestamp) % 2**32) / 90000
    assert media > 2.5 and media - 0.5 <= spread <= media + 3, (spread, media)  # late under load, never early
    # and not a burst: after 1 s of wall time, about 1 s of media has arrived
    early = [p for t, p in packets if t - packets[0][0] <= 1.0]
    assert ((early[-1].timestamp - packets[0][1].timestamp) % 2**32) / 90000 <= 1.6
    await c.close()


async def test_udp_session_receives_and_ignores_punch_packets(server: ServerProcess) -> None:
    rtp, rtcp = udp_pair()
    rtp.setblocking(False)
    c = await client(server)
    await describe(c, "bframes.mp4")
    transport = f"RTP/AVP;unicast;client_port={rtp.getsockname()[1]}-{rtcp.getsockname()[1]}"
    r = await c.request("SETUP", c.url("bframes.mp4/trackID=0"), {"Transport": transport})
    assert r.status == 200
    spec = parse_transport(r.headers["Transport"])[0]
    assert spec.server_port is not None
    server_rtp, server_rtcp = spec.server_port  # with --workers: worker k's pair is rtp_port + 2 k
    assert server_rtcp == server_rtp + 1 and (server_rtp - server.rtp_port) % 2 == 0
    assert server_rtp == server.rtp_port or os.environ.get("STREAMD_TEST_WORKERS")
    # a dummy packet like ffmpeg's NAT punch: must be ignored, not crash anything
    rtp.sendto(b"\x80\x00\x00\x00" + bytes(8), ("127.0.0.1", server_rtp))
    rtcp.sendto(b"\x80\xc9\x00\x01" + bytes(4), ("127.0.0.1", server_rtcp))
    await c.request("PLAY", c.url("bframes.mp4"))
    loop = asyncio.get_running_loop()
    data = await asyncio.wait_for(loop.sock_recv(rtp, 2000), 20)
    assert data[1] & 0x7F == 96
    await c.request("TEARDOWN", c.url("bframes.mp4"))
    await c.close()
    rtp.close()
    rtcp.close()


async def test_truncated_file_ends_with_bye_and_server_carries_on(server: ServerProcess) -> None:
    c = await client(server)
    r = await c.request("DESCRIBE", c.url("truncated.mp4"))
    if r.status != 200:
        assert r.status in (415, 500)
    else:
        await setup_both_tcp(c, "truncated.mp4")
        await c.request("PLAY", c.url("truncated.mp4"))
        for _ in range(100):
            if c.received.got_bye(1):
                break
            await asyncio.sleep(0.1)
        assert c.received.got_bye(1)
    await c.close()
    other = await client(server)
    assert (await other.request("OPTIONS", "*")).status == 200
    await other.close()


async def test_get_parameter_keeps_session_alive(server: ServerProcess) -> None:
    c = await client(server)
    await setup_both_tcp(c, "bframes.mp4")
    r = await c.request("GET_PARAMETER", c.url("bframes.mp4"))
    assert r.status == 200
    assert r.headers["Session"].startswith(c.session or "")
    await c.request("TEARDOWN", c.url("bframes.mp4"))
    await c.close()


async def test_pipelined_requests_are_answered_in_order(server: ServerProcess) -> None:
    c = await client(server)
    await c.send_raw(b"".join(f"OPTIONS * RTSP/1.0\r\nCSeq: {i}\r\n\r\n".encode() for i in range(1, 6)))
    cseqs = [(await c.next_response()).headers["CSeq"] for _ in range(5)]
    assert cseqs == ["1", "2", "3", "4", "5"]
    await c.close()


async def test_tracks_without_payload_format_are_left_out(server: ServerProcess) -> None:
    c = await client(server)
    _, sd = await describe(c, "mpeg4-aac.mp4")  # MPEG-4 Part 2 video has no payload format yet
    assert [m.media for m in sd.media] == ["audio"]
    response = await c.request("DESCRIBE", c.url("tone.flac"))  # nothing streamable: 415 with a reason
    assert response.status == 415
    assert b"flac" in response.body
    assert "left out" in server.log()
    await c.close()


async def test_audio_only_setup(server: ServerProcess) -> None:
    """A client may set up only some tracks: here just the audio."""
    c = await client(server)
    await describe(c, "bframes.mp4")
    r = await c.request("SETUP", c.url("bframes.mp4/trackID=1"), {"Transport": TCP.format(0, 1)})
    assert r.status == 200
    r = await c.request("PLAY", c.url("bframes.mp4"))
    assert [e.url for e in parse_rtp_info(r.headers["RTP-Info"])] == [c.url("bframes.mp4/trackID=1")]
    for _ in range(100):
        if c.received.got_bye(1):
            break
        await asyncio.sleep(0.1)
    packets = c.received.rtp(0)
    assert {p.payload_type for _, p in packets} == {97}
    assert len(packets) >= 45 * BFRAMES_SECONDS  # ~47 frames a second of 48 kHz AAC, one per packet
    await c.close()
