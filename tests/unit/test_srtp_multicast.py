"""Multicast SRTP without sockets: one key per group shared by its readers, every packet
protected once for the whole group, the key in the SETUP reply and the HTTPS-only SDP, receiver
reports counted only under the group key, and a new key when the send restarts."""

from __future__ import annotations

import struct

import pytest
from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket

from sdp import parse as parse_sdp
from streamd.live.live_presentation import live_presentation
from streamd.live.multicast import MulticastService
from streamd.rtsp.errors import RtspError
from streamd.rtsp.headers import parse_transport
from streamd.srtp.context import Protector, Unprotector
from streamd.srtp.sdes import parse_crypto
from tests.unit.test_multicast import make_live, spec

SAVP = parse_transport("RTP/SAVP;multicast")[0]


class FakeSockets:
    def __init__(self) -> None:
        self.rtp: list[bytes] = []
        self.rtcp: list[bytes] = []
        self.dropped = 0

    def send_rtp(self, packet: bytes) -> None:
        self.rtp.append(packet)

    def send_rtcp(self, packet: bytes) -> None:
        self.rtcp.append(packet)

    def close(self) -> None:
        pass


def encrypted_service(always: bool = False) -> MulticastService:
    return MulticastService(
        spec("239.255.42.0/28", (40000, 40099)), "127.0.0.1", lambda p: always, "h", lambda p: True
    )


def test_one_key_per_group_every_packet_protected_once() -> None:
    mc = encrypted_service()
    live = make_live()
    reply, sink = mc.setup(live, 0, "s1", "10.0.0.5", SAVP)
    again, _ = mc.setup(live, 0, "s2", "10.0.0.6", SAVP)
    sender = sink.sender
    key = sender.group_key()
    assert key is not None and reply.profile == "RTP/SAVP" and reply == again
    track = sender.tracks[0]
    sockets = FakeSockets()
    track.sockets = sockets  # type: ignore[assignment]
    payload = bytes([0x65]) + bytes(range(200))
    sender(0, 9000, [(payload, True)], True, False)
    (packet,) = sockets.rtp
    assert payload[1:40] not in packet
    clear = Unprotector(key).rtp(packet)
    assert clear is not None and clear.endswith(payload)
    assert struct.unpack("!I", clear[8:12])[0] == track.stream.ssrc
    # receiver reports count under the group key only
    report = bytes(RtcpRrPacket(ssrc=0xAAAA, reports=[RtcpReceiverInfo(track.stream.ssrc, 0, 0, 1, 0, 0, 0)]))
    sender._rtcp_received(track, report, ("10.0.0.5", 40001))
    assert track.receivers == {}
    sender._rtcp_received(track, Protector(key).rtcp(report), ("10.0.0.5", 40001))
    assert list(track.receivers) == [0xAAAA]
    sender.running = True
    sender.stop("test over")
    assert Unprotector(key).rtcp(sockets.rtcp[-1]) is not None  # the BYE, as SRTCP


def test_the_key_changes_when_the_send_restarts_after_everyone_left() -> None:
    mc = encrypted_service()
    live = make_live()
    _, sink = mc.setup(live, 0, "s1", "10.0.0.5", SAVP)
    sender = sink.sender
    first = sender.group_key()
    sender.running = True
    sender.stop("paused")
    assert sender.group_key() == first, "a paused member still holds the key"
    sender.running = True
    sender.setups.clear()
    sender.stop("the last member left")
    assert sender.key is None and sender.group_key() not in (None, first)


def test_the_sdp_with_the_group_key_goes_over_https_only() -> None:
    mc = encrypted_service(always=True)
    live = make_live()
    sender = mc._sender(live)
    presentation = live_presentation(live)
    with pytest.raises(RtspError) as refused:
        mc.sdp("live/cam", presentation, presentation.sdp("192.0.2.1"))
    assert refused.value.status == 403
    text = mc.sdp("live/cam", presentation, presentation.sdp("192.0.2.1"), secure=True)
    assert text is not None
    for media in parse_sdp(text).media:
        assert media.proto == "RTP/SAVP"
        assert parse_crypto(media.get("crypto") or "").key == sender.group_key()
    plain = MulticastService(spec("239.255.42.0/28", (40000, 40099)), "127.0.0.1", lambda p: True, "h")
    plain._sender(live)
    assert b"crypto" not in (plain.sdp("live/cam", presentation, presentation.sdp()) or "").encode()
