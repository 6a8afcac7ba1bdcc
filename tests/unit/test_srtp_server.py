"""SRTP through the real request handling (in-process harness): keys offered in DESCRIBE over a
secure connection, SETUP with RTP/SAVP and a MIKEY KeyMgmt, protected RTP/RTCP out, the client's
SRTCP authenticated before it counts, and every refusal with its status."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from sdp import parse as parse_sdp
from streamd.rtsp.headers import parse_transport
from streamd.srtp.context import SRTP_STATS, Protector, Unprotector
from streamd.srtp.mikey import CryptoSession, build_mikey, format_key_mgmt, parse_mikey_base64
from streamd.srtp.sdes import CryptoAttribute, format_crypto, parse_crypto
from streamd.srtp.suites import MasterKey
from tests.unit.harness import (
    ANNOUNCED,
    FakeConnection,
    Harness,
    receiver_report,
    session_id,
    until,
)

SAVP_UDP = {"Transport": "RTP/SAVP;unicast;client_port=5000-5001"}
AVP_UDP = {"Transport": "RTP/AVP;unicast;client_port=5000-5001"}
SAVP_TCP = {"Transport": "RTP/SAVP/TCP;unicast;interleaved=0-1"}
CLIENT_KEY = MasterKey.generate()


def key_mgmt(key: MasterKey = CLIENT_KEY) -> dict[str, str]:
    message = build_mikey(key, [CryptoSession(0, 0x1234)], 1, 0, bytes(16))
    return {"KeyMgmt": format_key_mgmt("rtsps://10.0.0.254/clip.mp4/trackID=0", message)}


@pytest_asyncio.fixture
async def h(media: Path) -> AsyncIterator[Harness]:
    harness = Harness(media)
    policies = {"clip.mp4": "optional", "live/cam": "optional"}
    harness.server.player.encryption = lambda path: policies.get(path, "no")  # type: ignore[method-assign]
    harness.server.publishing._encryption = lambda path: policies.get(path, "no")  # type: ignore[method-assign]
    harness.policies = policies  # type: ignore[attr-defined]
    yield harness
    await harness.close()


def secure(h: Harness) -> FakeConnection:
    c = h.connect()
    c.secure = True
    return c


async def offered_keys(h: Harness, c: FakeConnection) -> list[tuple[MasterKey, int]]:
    """DESCRIBE; the (key, SSRC) of every media section, SDES and MIKEY agreeing."""
    reply = await h.request(c, "DESCRIBE", "clip.mp4")
    assert reply.status == 200
    keys = []
    for media in parse_sdp(reply.body).media:
        assert media.proto == "RTP/SAVP"
        crypto = parse_crypto(media.get("crypto") or "")
        mikey_value = media.get("key-mgmt") or ""
        assert mikey_value.startswith("mikey ")
        mikey = parse_mikey_base64(mikey_value.split()[1])
        assert mikey.key == crypto.key and len(mikey.sessions) == 1
        keys.append((crypto.key, mikey.sessions[0].ssrc))
    return keys


def rtp_payload(packet: bytes) -> bytes:
    return packet[12 + 4 * (packet[0] & 0x0F) :]


async def test_savp_over_udp_protects_everything_and_checks_the_clients_srtcp(h: Harness) -> None:
    c = secure(h)
    (key, ssrc), _ = await offered_keys(h, c)
    setup = await h.request(c, "SETUP", "clip.mp4/trackID=0", {**SAVP_UDP, **key_mgmt()})
    assert setup.status == 200, setup
    (reply,) = parse_transport(setup.headers["Transport"])
    assert reply.profile == "RTP/SAVP" and reply.ssrc == ssrc
    assert parse_mikey_base64(setup.headers["KeyMgmt"].split('data="')[1].rstrip('"')).key == key
    sid = session_id(setup)
    assert (await h.request(c, "PLAY", "clip.mp4", session=sid)).status == 200
    await until(lambda: len(h.udp.rtp) >= 5 and bool(h.udp.rtcp))
    clear = Unprotector(key)
    for packet, _ in h.udp.rtp:
        plain = clear.rtp(packet)
        assert plain is not None and struct.unpack("!I", plain[8:12])[0] == ssrc
        assert len(packet) == len(plain) + 10
        assert rtp_payload(plain)[:16] not in packet  # nothing of the payload in clear
    assert all(clear.rtcp(p) is not None for p, _ in h.udp.rtcp)  # sender reports as SRTCP
    # the client's receiver reports count only when its key authenticates them
    session = h.server.sessions.get(sid)
    h.clock.advance(30)
    before = dict(vars(SRTP_STATS))
    h.server.inbound.rtcp_datagram(receiver_report(ssrc), ("10.0.0.1", 5001))  # plain: dropped
    assert session.last_activity < h.clock()  # type: ignore[union-attr]
    tampered = bytearray(Protector(CLIENT_KEY).rtcp(receiver_report(ssrc)))
    tampered[-1] ^= 1
    h.server.inbound.rtcp_datagram(bytes(tampered), ("10.0.0.1", 5001))
    assert session.last_activity < h.clock()  # type: ignore[union-attr]
    assert SRTP_STATS.auth_failed + SRTP_STATS.malformed >= before["auth_failed"] + before["malformed"] + 2
    good = Protector(CLIENT_KEY).rtcp(receiver_report(ssrc))
    h.server.inbound.rtcp_datagram(good, ("10.0.0.1", 5001))
    assert session.last_activity == h.clock()  # type: ignore[union-attr]
    h.server.inbound.rtcp_datagram(good, ("10.0.0.1", 5001))  # replayed
    assert SRTP_STATS.replayed == before["replayed"] + 1
    metrics = h.server.metrics_text() if hasattr(h.server, "metrics_text") else None
    assert metrics is None or "streamd_srtp_dropped" in metrics


async def test_interleaved_savp_is_srtp_inside_the_connection(h: Harness) -> None:
    c = secure(h)
    (key, _), _ = await offered_keys(h, c)
    setup = await h.request(c, "SETUP", "clip.mp4/trackID=0", SAVP_TCP)
    assert setup.status == 200 and setup.headers["Transport"].startswith("RTP/SAVP/TCP")
    assert (await h.request(c, "PLAY", "clip.mp4", session=session_id(setup))).status == 200
    await until(lambda: len([f for f in c.frames if f.channel == 0]) >= 3)
    clear = Unprotector(key)
    assert all(clear.rtp(f.payload) is not None for f in c.frames if f.channel == 0)


async def test_ffmpegs_way_avp_after_an_sdp_with_keys_is_srtp(h: Harness) -> None:
    c = secure(h)
    keys = await offered_keys(h, c)
    first = await h.request(c, "SETUP", "clip.mp4/trackID=0", AVP_UDP)
    assert first.status == 200 and first.headers["Transport"].startswith("RTP/AVP;")
    sid = session_id(first)
    second = await h.request(
        c, "SETUP", "clip.mp4/trackID=1", {"Transport": "RTP/AVP;client_port=5002-5003"}, session=sid
    )
    assert second.status == 200
    assert (await h.request(c, "PLAY", "clip.mp4", session=sid)).status == 200
    await until(lambda: {a[1] for _, a in h.udp.rtp} >= {5000, 5002})
    by_port = {5000: Unprotector(keys[0][0]), 5002: Unprotector(keys[1][0])}
    assert all(by_port[addr[1]].rtp(p) is not None for p, addr in h.udp.rtp)
    # another session on the same connection without a new DESCRIBE: fresh keys, not these
    other = await h.request(c, "SETUP", "clip.mp4/trackID=0", {"Transport": "RTP/SAVP;client_port=5004-5005"})
    key = parse_mikey_base64(other.headers["KeyMgmt"].split('data="')[1].rstrip('"')).key
    assert key not in (keys[0][0], keys[1][0])


async def test_refusals_with_a_status_and_a_log_line(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    plain = h.connect()
    described = await h.request(plain, "DESCRIBE", "clip.mp4")
    assert b"a=crypto" not in described.body and b"RTP/SAVP" not in described.body
    refused = await h.request(plain, "SETUP", "clip.mp4/trackID=0", SAVP_UDP)
    assert refused.status == 461 and "needs RTSPS: SRTP keys never travel over plain RTSP" in caplog.text
    c = secure(h)
    bad = await h.request(c, "SETUP", "clip.mp4/trackID=0", {**SAVP_UDP, "KeyMgmt": 'prot=mikey;data="AQ=="'})
    assert bad.status == 466 and "unusable KeyMgmt: MIKEY message ends inside" in caplog.text
    h.policies["clip.mp4"] = "strict"  # type: ignore[attr-defined]
    refused = await h.request(c, "SETUP", "clip.mp4/trackID=0", AVP_UDP)
    assert refused.status == 461 and "plain RTP over UDP is refused on this path" in caplog.text
    assert (await h.request(c, "SETUP", "clip.mp4/trackID=0", SAVP_UDP)).status == 200
    h.policies["clip.mp4"] = "no"  # type: ignore[attr-defined]
    c2 = secure(h)
    described = await h.request(c2, "DESCRIBE", "clip.mp4")
    assert b"a=crypto" not in described.body
    assert (await h.request(c2, "SETUP", "clip.mp4/trackID=0", SAVP_UDP)).status == 461


# --- publishers -------------------------------------------------------------------------------------

SDP = {"Content-Type": "application/sdp"}
RECORD_SAVP_TCP = {"Transport": "RTP/SAVP/TCP;unicast;interleaved=0-1;mode=record"}


def idr(seq: int) -> bytes:
    """An RTP packet holding an IDR slice NAL unit, as a publisher sends it."""
    return struct.pack("!BBHII", 0x80, 0x80 | 96, seq, 1000 * seq, 0x42) + bytes([0x65, 0x88, 0x84, 0x00])


def with_crypto(key: MasterKey) -> bytes:
    line = f"a=crypto:1 {format_crypto(CryptoAttribute(1, key)).split(' ', 1)[1]}\r\n"
    return ANNOUNCED.replace("a=rtpmap:96", line + "a=rtpmap:96", 1).encode()


async def test_publisher_srtp_from_announced_keys_and_keymgmt(h: Harness) -> None:
    c = secure(h)
    key = MasterKey.generate()
    announce = await h.request(c, "ANNOUNCE", "live/cam", SDP, with_crypto(key))
    assert announce.status == 200, announce
    sid = session_id(announce)
    setup = await h.request(c, "SETUP", "live/cam/streamid=0", RECORD_SAVP_TCP, session=sid)
    assert setup.status == 200 and setup.headers["Transport"].startswith("RTP/SAVP/TCP")
    assert (await h.request(c, "RECORD", "live/cam", session=sid)).status == 200
    live = h.server.paths.live.get("live/cam")
    sender = Protector(key)
    before = SRTP_STATS.auth_failed
    h.interleaved(c, 0, idr(1))  # plain RTP in an SRTP session: dropped
    tampered = bytearray(sender.rtp(idr(2)))
    tampered[-1] ^= 1
    h.interleaved(c, 0, bytes(tampered))
    assert live.units_in == 0 and SRTP_STATS.auth_failed >= before + 1  # type: ignore[union-attr]
    for seq in range(3, 6):
        h.interleaved(c, 0, sender.rtp(idr(seq)))
    await until(lambda: live.units_in >= 2)  # type: ignore[union-attr]
    # a second publisher gives its key in KeyMgmt at SETUP, as GStreamer's rtspclientsink does
    c2 = secure(h)
    h.policies["live/cam2"] = "strict"  # type: ignore[attr-defined]
    announce = await h.request(c2, "ANNOUNCE", "live/cam2", SDP, ANNOUNCED.encode())
    sid2 = session_id(announce)
    refused = await h.request(c2, "SETUP", "live/cam2/streamid=0", RECORD_SAVP_TCP, session=sid2)
    assert refused.status == 466
    setup = await h.request(
        c2, "SETUP", "live/cam2/streamid=0", {**RECORD_SAVP_TCP, **key_mgmt()}, session=sid2
    )
    assert setup.status == 200


async def test_publisher_key_refusals(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    bad = ANNOUNCED.replace("a=rtpmap:96", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA\r\na=rtpmap:96")
    reply = await h.request(secure(h), "ANNOUNCE", "live/cam", SDP, bad.encode())
    assert reply.status == 466 and "needs 30 bytes of key and salt" in caplog.text
    bad = ANNOUNCED.replace("a=rtpmap:96", "a=key-mgmt:mikey AQID\r\na=rtpmap:96")
    assert (await h.request(secure(h), "ANNOUNCE", "live/cam", SDP, bad.encode())).status == 466
    reply = await h.request(h.connect(), "ANNOUNCE", "live/cam", SDP, with_crypto(MasterKey.generate()))
    assert reply.status == 403 and "over plain RTSP are refused" in caplog.text
    plain = h.connect()
    sid = session_id(await h.request(plain, "ANNOUNCE", "live/cam", SDP, ANNOUNCED.encode()))
    refused = await h.request(plain, "SETUP", "live/cam/streamid=0", RECORD_SAVP_TCP, session=sid)
    assert refused.status == 461


async def test_multicast_setup_follows_the_groups_encryption(media: Path) -> None:
    h = Harness(media, multicast_range="239.255.42.0/28", multicast_ports=(41000, 41099))
    try:
        h.server.player.encryption = lambda path: "optional"  # type: ignore[method-assign]
        h.server.multicast.encrypted = lambda path: True
        publisher = h.connect()
        sid = session_id(await h.request(publisher, "ANNOUNCE", "live/cam", SDP, ANNOUNCED.encode()))
        tcp = {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record"}
        assert (await h.request(publisher, "SETUP", "live/cam/streamid=0", tcp, session=sid)).status == 200
        assert (await h.request(publisher, "RECORD", "live/cam", session=sid)).status == 200
        plain = await h.request(
            h.connect(), "SETUP", "live/cam/trackID=0", {"Transport": "RTP/AVP;multicast"}
        )
        assert plain.status == 461
        keys = []
        for _ in range(2):
            c = secure(h)
            reply = await h.request(c, "SETUP", "live/cam/trackID=0", {"Transport": "RTP/SAVP;multicast"})
            assert reply.status == 200 and reply.headers["Transport"].startswith("RTP/SAVP;multicast")
            keys.append(parse_mikey_base64(reply.headers["KeyMgmt"].split('data="')[1].rstrip('"')))
        assert keys[0].key == keys[1].key, "one key for the group, shared by its readers"
        assert keys[0].sessions == keys[1].sessions
    finally:
        await h.close()
