"""A viewer's sink without a network: packets go to the peer as built, NACKs are answered from
the bounded history, PLI/FIR reach the session, the browser's payload type is in the header."""

from __future__ import annotations

from fractions import Fraction

from aiortc.rtp import RTCP_PSFB_FIR, RTCP_PSFB_PLI, RTCP_RTPFB_NACK, RtcpPsfbPacket, RtcpRtpfbPacket

from streamd.rtp.outgoing import OutgoingStream
from streamd.rtp.payload.opus import OpusFormat
from streamd.webrtc.sink import HISTORY, Renumbered, WebrtcSink
from tests.unit.webrtc_fakes import FakePeer


def _packet(seq: int) -> bytes:
    return bytes([0x80, 96, seq >> 8, seq & 0xFF]) + b"\0" * 8 + b"payload"


def test_nack_resends_from_history_and_history_is_bounded() -> None:
    peer = FakePeer()
    sink = WebrtcSink(peer, 96, video=True)  # type: ignore[arg-type]
    for seq in range(HISTORY + 10):
        sink.send_rtp(_packet(seq))
    assert len(sink.history) == HISTORY
    peer.sent.clear()
    sink.feedback(RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=2, lost=[HISTORY + 5, 3, 0]))
    assert peer.sent == [_packet(HISTORY + 5)]  # 0 and 3 have left the history
    assert (sink.nacks, sink.retransmitted) == (1, 1)


def test_keyframe_requests_reach_the_session() -> None:
    asked: list[bool] = []
    sink = WebrtcSink(FakePeer(), 96, video=True, on_keyframe_request=lambda: asked.append(True))  # type: ignore[arg-type]
    sink.feedback(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=2))
    sink.feedback(RtcpPsfbPacket(fmt=RTCP_PSFB_FIR, ssrc=1, media_ssrc=2))
    assert asked == [True, True] and sink.keyframe_requests == 2


def test_audio_keeps_no_history() -> None:
    sink = WebrtcSink(FakePeer(), 111, video=False)  # type: ignore[arg-type]
    sink.send_rtp(_packet(1))
    assert sink.history == {} and sink.sent == 1


def test_the_browsers_payload_type_goes_into_the_header() -> None:
    from media.track import Track

    track = Track(1, "audio", "opus", Fraction(1, 48000), sample_rate=48000, channels=2)
    fmt = OpusFormat(track, 97)
    stream = OutgoingStream(Renumbered(fmt, 111), Fraction(1, 48000), "c")  # type: ignore[arg-type]
    marked, plain = stream.pack(960, [(b"a", True), (b"b", False)])
    assert (marked[1], plain[1]) == (0x80 | 111, 111)
    assert stream.clock_rate == 48000  # everything else is the path's format
