"""Keyframe requests relayed to RTSP publishers as RTCP PLI: the rate limit, who is asked, the
compound packet, and the way back (UDP RTCP port, interleaved RTCP channel), through the real
request handling with a clock the test moves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from aiortc.rtp import RTCP_PSFB_PLI, RtcpPacket, RtcpPsfbPacket, RtcpRrPacket, RtcpSdesPacket, RtpPacket

from streamd.live.keyframe_relay import PLI_INTERVAL, RateLimit
from streamd.rtp.rtcp import picture_loss
from streamd.server_session import PlayerSession
from streamd.srtp.context import Unprotector
from streamd.srtp.session import SessionSrtp
from streamd.srtp.suites import MasterKey
from tests.unit.harness import ANNOUNCED, FakeConnection, Harness, session_id

SDP = {"Content-Type": "application/sdp"}
RECORD_TCP = {"Transport": "RTP/AVP/TCP;unicast;interleaved=4-5;mode=record"}
RECORD_UDP = {"Transport": "RTP/AVP;unicast;client_port=7000-7001;mode=record"}
PUBLISHER_SSRC = 0x1234ABCD


@pytest_asyncio.fixture
async def h(media: Path) -> AsyncIterator[Harness]:
    harness = Harness(media)
    yield harness
    await harness.close()


def rtp(seq: int) -> bytes:
    packet = RtpPacket(
        payload_type=96, marker=1, sequence_number=seq, timestamp=3000 * seq, ssrc=PUBLISHER_SSRC
    )
    packet.payload = bytes([0x65, 0x88, 0x84, 0x00])  # an IDR slice
    return packet.serialize()


async def publish(h: Harness, c: FakeConnection, transport: dict[str, str]) -> str:
    announce = await h.request(c, "ANNOUNCE", "live/cam", SDP, ANNOUNCED.encode())
    sid = session_id(announce)
    assert (await h.request(c, "SETUP", "live/cam/streamid=0", transport, session=sid)).status == 200
    assert (await h.request(c, "RECORD", "live/cam", session=sid)).status == 200
    return sid


def plis(data: bytes) -> list[RtcpPsfbPacket]:
    return [p for p in RtcpPacket.parse(data) if isinstance(p, RtcpPsfbPacket) and p.fmt == RTCP_PSFB_PLI]


def test_rate_limit_lets_one_through_per_interval() -> None:
    limit = RateLimit(0.5)
    assert limit.allow(10.0)
    assert not any(limit.allow(10.0 + i * 0.02) for i in range(20))
    assert limit.allow(10.5)
    assert not limit.allow(10.9)
    assert limit.allow(11.0)


def test_pli_compound_starts_with_a_receiver_report() -> None:
    packets = RtcpPacket.parse(picture_loss(7, PUBLISHER_SSRC, "streamd@host"))
    assert [type(p) for p in packets] == [RtcpRrPacket, RtcpSdesPacket, RtcpPsfbPacket]
    rr, _sdes, pli = packets
    assert rr.ssrc == 7 and rr.reports == []
    assert (pli.fmt, pli.ssrc, pli.media_ssrc, pli.fci) == (RTCP_PSFB_PLI, 7, PUBLISHER_SSRC, b"")


async def test_udp_publisher_gets_one_pli_per_burst_on_its_rtcp_port(h: Harness) -> None:
    p = h.connect("10.0.0.2")
    await publish(h, p, RECORD_UDP)
    live = h.server.paths.live["live/cam"]
    assert live.request_keyframe is not None
    live.request_keyframe()
    assert h.udp.rtcp == []  # no RTP yet: its SSRC is unknown, nobody to ask
    assert h.server.inbound.rtp_datagram(rtp(1), ("10.0.0.2", 7000))
    for _ in range(20):
        live.request_keyframe()
    assert len(h.udp.rtcp) == 1
    data, address = h.udp.rtcp[0]
    assert address == ("10.0.0.2", 7001)
    assert [p.media_ssrc for p in plis(data)] == [PUBLISHER_SSRC]
    assert isinstance(RtcpPacket.parse(data)[0], RtcpRrPacket)
    h.clock.advance(PLI_INTERVAL / 2)
    live.request_keyframe()
    assert len(h.udp.rtcp) == 1
    h.clock.advance(PLI_INTERVAL / 2)
    live.request_keyframe()
    assert len(h.udp.rtcp) == 2


async def test_tcp_publisher_gets_pli_on_its_interleaved_rtcp_channel(h: Harness) -> None:
    p = h.connect("10.0.0.2")
    await publish(h, p, RECORD_TCP)
    h.interleaved(p, 4, rtp(1))
    live = h.server.paths.live["live/cam"]
    assert live.request_keyframe is not None
    for _ in range(20):
        live.request_keyframe()
    frames = [f for f in p.frames if f.channel == 5]
    assert len(frames) == 1 and [x.media_ssrc for x in plis(frames[0].payload)] == [PUBLISHER_SSRC]
    assert h.udp.rtcp == []


async def test_rtsp_readers_pli_reaches_the_publisher(h: Harness) -> None:
    p = h.connect("10.0.0.2")
    await publish(h, p, RECORD_TCP)
    h.interleaved(p, 4, rtp(1))
    r = h.connect("10.0.0.3")
    assert (await h.request(r, "DESCRIBE", "live/cam")).status == 200
    transport = {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"}
    setup = await h.request(r, "SETUP", "live/cam/trackID=0", transport)
    rid = session_id(setup)
    assert (await h.request(r, "PLAY", "live/cam", session=rid)).status == 200
    reader = h.server.sessions.get(rid)
    assert isinstance(reader, PlayerSession)
    ours = next(iter(reader.bindings.values())).stream.ssrc
    h.interleaved(r, 1, picture_loss(99, ours ^ 1, "player"))  # about a stream it does not get
    assert [f for f in p.frames if f.channel == 5] == []
    h.interleaved(r, 1, picture_loss(99, ours, "player"))
    frames = [f for f in p.frames if f.channel == 5]
    assert len(frames) == 1 and [x.media_ssrc for x in plis(frames[0].payload)] == [PUBLISHER_SSRC]


def test_srtp_publisher_gets_srtcp_under_its_own_key() -> None:
    key = MasterKey.generate()
    srtp = SessionSrtp()
    assert srtp.rtcp_to_publisher(0, picture_loss(7, PUBLISHER_SSRC, "s")) is None  # no key: not sent
    srtp.receive_with(0, key)
    clear = picture_loss(7, PUBLISHER_SSRC, "s")
    protected = srtp.rtcp_to_publisher(0, clear)
    assert protected is not None and protected != clear
    assert Unprotector(key).rtcp(protected) == clear  # what the publisher, holding the key, reads
