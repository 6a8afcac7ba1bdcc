"""Our SRTCP key towards an SRTP publisher, through the real request handling: a MIKEY publisher
(GStreamer's rtspclientsink: RTP/SAVP in the ANNOUNCE, its key in the SETUP's KeyMgmt) is told a
key of ours in the ANNOUNCE reply (one KeyMgmt per section, in order) and the SETUP reply, naming
the SSRC our RTCP carries, and its PLI is SRTCP under that key; an SDES publisher (a=crypto) is
told nothing and gets SRTCP under its own key; no key ever goes out over plain RTSP."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from aiortc.rtp import RTCP_PSFB_PLI, RtcpPacket, RtcpPsfbPacket
from hypothesis import given
from hypothesis import strategies as st

from sdp import SdpParseError
from sdp import parse as parse_sdp
from streamd.srtp.announce import mikey_sections
from streamd.srtp.context import Protector, Unprotector
from streamd.srtp.mikey import (
    CryptoSession,
    MikeyMessage,
    build_mikey,
    format_key_mgmt,
    parse_key_mgmt,
    parse_mikey_base64,
)
from streamd.srtp.sdes import CryptoAttribute, format_crypto
from streamd.srtp.suites import SUITES, MasterKey
from tests.unit.harness import ANNOUNCED, FakeConnection, Harness, session_id

SDP = {"Content-Type": "application/sdp"}
SAVP_UDP = {"Transport": "RTP/SAVP;unicast;client_port=7000-7001;mode=record"}
PUBLISHER_SSRC = 0x1234ABCD
AUDIO = "m=audio 0 RTP/SAVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\n" + (
    "a=fmtp:97 streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;"
    "indexdeltalength=3;config=1190\r\na=control:streamid=1\r\n"
)
SAVP_ANNOUNCE = ANNOUNCED.replace("RTP/AVP", "RTP/SAVP") + AUDIO  # what rtspclientsink profiles=savp sends


@pytest_asyncio.fixture
async def h(media: Path) -> AsyncIterator[Harness]:
    harness = Harness(media)
    harness.server.publishing._encryption = lambda path: "optional"  # type: ignore[method-assign]
    yield harness
    await harness.close()


def secure(h: Harness) -> FakeConnection:
    c = h.connect("10.0.0.2")
    c.secure = True
    return c


def key_mgmt(key: MasterKey) -> dict[str, str]:
    message = build_mikey(key, [CryptoSession(0, PUBLISHER_SSRC)], 1, 0, bytes(16))
    return {"KeyMgmt": format_key_mgmt("rtsps://10.0.0.254/live/cam/streamid=0", message)}


def told(value: str) -> MikeyMessage:
    (entry,) = parse_key_mgmt(value)
    assert entry.prot == "mikey"
    return parse_mikey_base64(entry.data)


def rtp(seq: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 0x80 | 96, seq, 3000 * seq, PUBLISHER_SSRC) + bytes(
        [0x65, 0x88, 0x84, 0]
    )


def plis(data: bytes) -> list[RtcpPsfbPacket]:
    return [p for p in RtcpPacket.parse(data) if isinstance(p, RtcpPsfbPacket) and p.fmt == RTCP_PSFB_PLI]


async def test_a_mikey_publisher_is_told_our_key_and_gets_srtcp_under_it(h: Harness) -> None:
    c = secure(h)
    announce = await h.request(c, "ANNOUNCE", "live/cam", SDP, SAVP_ANNOUNCE.encode())
    assert announce.status == 200
    video, audio = (told(v) for v in announce.headers.getall("KeyMgmt"))  # one per stream, in order
    assert video.key != audio.key
    sid = session_id(announce)
    theirs = MasterKey.generate(SUITES["AES_CM_128_HMAC_SHA1_32"])
    setup = await h.request(c, "SETUP", "live/cam/streamid=0", {**SAVP_UDP, **key_mgmt(theirs)}, session=sid)
    assert setup.status == 200 and setup.headers["Transport"].startswith("RTP/SAVP")
    again = told(setup.headers["KeyMgmt"])
    assert again.key == video.key and again.sessions == video.sessions
    (ours,) = video.sessions
    assert (await h.request(c, "RECORD", "live/cam", session=sid)).status == 200
    assert h.server.inbound.rtp_datagram(Protector(theirs).rtp(rtp(1)), ("10.0.0.2", 7000))
    live = h.server.paths.live["live/cam"]
    assert live.request_keyframe is not None
    live.request_keyframe()
    ((data, address),) = h.udp.rtcp
    assert address == ("10.0.0.2", 7001)
    assert Unprotector(theirs).rtcp(data) is None  # not under the publisher's key ...
    clear = Unprotector(video.key).rtcp(data)  # ... but under ours, from our SSRC
    assert clear is not None and [(p.ssrc, p.media_ssrc) for p in plis(clear)] == [
        (ours.ssrc, PUBLISHER_SSRC)
    ]


async def test_a_key_first_given_at_setup_is_answered_there(h: Harness) -> None:
    """An RTP/AVP m-line told nothing at ANNOUNCE; a KeyMgmt at SETUP gets ours in the reply."""
    c = secure(h)
    announce = await h.request(c, "ANNOUNCE", "live/cam", SDP, ANNOUNCED.encode())
    assert "KeyMgmt" not in announce.headers
    theirs = MasterKey.generate()
    transport = {"Transport": "RTP/AVP;unicast;client_port=7000-7001;mode=record", **key_mgmt(theirs)}
    setup = await h.request(c, "SETUP", "live/cam/streamid=0", transport, session=session_id(announce))
    assert setup.status == 200 and told(setup.headers["KeyMgmt"]).key != theirs


async def test_an_sdes_publisher_gets_srtcp_under_its_own_key(h: Harness) -> None:
    c = secure(h)
    theirs = MasterKey.generate()
    line = f"a=crypto:1 {format_crypto(CryptoAttribute(1, theirs)).split(' ', 1)[1]}\r\n"
    sdp = ANNOUNCED.replace("RTP/AVP", "RTP/SAVP").replace("a=rtpmap:96", line + "a=rtpmap:96", 1)
    announce = await h.request(c, "ANNOUNCE", "live/cam", SDP, sdp.encode())
    assert announce.status == 200 and "KeyMgmt" not in announce.headers
    sid = session_id(announce)
    setup = await h.request(c, "SETUP", "live/cam/streamid=0", SAVP_UDP, session=sid)
    assert setup.status == 200 and "KeyMgmt" not in setup.headers
    assert (await h.request(c, "RECORD", "live/cam", session=sid)).status == 200
    assert h.server.inbound.rtp_datagram(Protector(theirs).rtp(rtp(1)), ("10.0.0.2", 7000))
    h.server.paths.live["live/cam"].request_keyframe()  # type: ignore[misc]
    ((data, _),) = h.udp.rtcp
    clear = Unprotector(theirs).rtcp(data)
    assert clear is not None and [p.media_ssrc for p in plis(clear)] == [PUBLISHER_SSRC]


async def test_no_key_of_ours_over_plain_rtsp(h: Harness) -> None:
    plain = h.connect("10.0.0.2")
    announce = await h.request(plain, "ANNOUNCE", "live/cam", SDP, SAVP_ANNOUNCE.encode())
    assert announce.status == 200 and "KeyMgmt" not in announce.headers
    transport = {
        "Transport": "RTP/AVP;unicast;client_port=7000-7001;mode=record",
        **key_mgmt(MasterKey.generate()),
    }
    setup = await h.request(plain, "SETUP", "live/cam/streamid=0", transport, session=session_id(announce))
    assert "KeyMgmt" not in setup.headers


# --- which sections are told a key (the announced SDP is network input) -----------------------------

PROTOS = st.sampled_from(["RTP/AVP", "RTP/SAVP", "RTP/SAVPF", "rtp/savp", "RTP/AVPF", "UDP/TLS/RTP/SAVPF"])
SECTION = st.tuples(PROTOS, st.booleans(), st.booleans())  # proto, a=crypto, a=key-mgmt


def sdp_text(sections: list[tuple[str, bool, bool]], session_mikey: bool) -> str:
    lines = ["v=0", "o=- 0 0 IN IP4 127.0.0.1", "s=x", "t=0 0"]
    lines += ["a=key-mgmt:mikey AQID"] if session_mikey else []
    for n, (proto, crypto, mikey) in enumerate(sections):
        lines.append(f"m=video 0 {proto} {96 + n}")
        lines += ["a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA"] if crypto else []
        lines += ["a=key-mgmt:mikey AQID"] if mikey else []
    return "\r\n".join(lines) + "\r\n"


@given(st.lists(SECTION, max_size=6), st.booleans())
def test_mikey_sections_are_those_not_keyed_by_sdes(
    sections: list[tuple[str, bool, bool]], session: bool
) -> None:
    found = mikey_sections(parse_sdp(sdp_text(sections, session)))
    expected = [
        n
        for n, (proto, crypto, mikey) in enumerate(sections)
        if mikey or (not crypto and (session or proto.upper() in ("RTP/SAVP", "RTP/SAVPF")))
    ]
    assert found == expected


@given(st.text(max_size=300))
def test_mikey_sections_of_any_parsable_sdp(text: str) -> None:
    try:
        description = parse_sdp(text)
    except SdpParseError:
        return
    sections = mikey_sections(description)
    assert sections == sorted(set(sections)) and all(0 <= n < len(description.media) for n in sections)
