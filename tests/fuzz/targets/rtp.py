"""RTP and RTCP from the network: receiver reports, and every depacketizer.

An input is several packets, each a 16-bit length then the packet (:func:`~.common.framed`), so
the mutator reaches sequence numbers, timestamps and markers as well as payloads. Codecs a
publisher may send (H.264, H.265, AAC as mpeg4-generic or MP4A-LATM, Opus) go the way the server
takes them: SDP -> announced tracks -> ``LivePath.on_rtp`` (parse, depacketize, keyframe check,
packetize again for readers); the other depacketizers (used by the relay's and the tests' own
receivers) get the payloads directly.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket, RtcpSrPacket, RtpPacket

from sdp import parse as parse_sdp
from streamd.live.announced import announced_tracks
from streamd.live.hub import LivePath
from streamd.rtp.payload.ac3 import Ac3Depacketizer
from streamd.rtp.payload.assembly import MAX_UNIT_SIZE
from streamd.rtp.payload.av1 import Av1Depacketizer
from streamd.rtp.payload.base import DepacketizedUnit, Depacketizer
from streamd.rtp.payload.mjpeg import MjpegDepacketizer
from streamd.rtp.payload.mp2t import Mp2tDepacketizer
from streamd.rtp.payload.mpeg_audio import MpegAudioDepacketizer
from streamd.rtp.payload.mpeg_video import MpegVideoDepacketizer
from streamd.rtp.payload.pcm import PcmDepacketizer
from streamd.rtp.payload.vp8 import Vp8Depacketizer
from streamd.rtp.payload.vp9 import Vp9Depacketizer
from streamd.rtp.reception import ReceptionReport
from streamd.rtp.rtcp import parse_compound

from .common import framed

# --- RTCP ------------------------------------------------------------------------------------


def fuzz_rtcp(data: bytes) -> None:
    """A datagram at our RTCP port: ``parse_compound`` never raises; the report blocks of RR/SR
    fold into a stream's reception figures without raising, with a fraction within 0..1."""
    report = ReceptionReport()
    for packet in parse_compound(data):
        if isinstance(packet, RtcpRrPacket | RtcpSrPacket):
            for block in packet.reports:
                assert isinstance(block, RtcpReceiverInfo)
                report.update(block, 90000, 0xE000_0000_0000_0000, 0xDFFF_0000_0000_0000)
                assert 0.0 <= report.fraction_lost <= 1.0
                assert report.rtt_ms is None or report.rtt_ms >= 0
    report.as_dict()


# --- live codecs through the server's path ---------------------------------------------------

_HEAD = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=fuzz\r\nt=0 0\r\n"
_H264_SETS = ",".join(
    base64.b64encode(bytes.fromhex(h)).decode()
    for h in ("6742c01eda0280bfe5c044000003000400000300c83c58ba80", "68ce3c80")
)
_H265_SETS = {
    "vps": "40010c01ffff016000000300900000030000030078959809",
    "sps": "420101016000000300900000030000030078a00502016965959a4932bc05a80808082000000300200000030321",
    "pps": "4401c172b46240",
}
_H265_FMTP = ";".join(
    f"sprop-{k}={base64.b64encode(bytes.fromhex(v)).decode()}" for k, v in _H265_SETS.items()
)
LIVE_SDP = {
    "h264": f"m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    f"a=fmtp:96 packetization-mode=1;sprop-parameter-sets={_H264_SETS}\r\n",
    "h265": f"m=video 0 RTP/AVP 96\r\na=rtpmap:96 H265/90000\r\na=fmtp:96 {_H265_FMTP}\r\n",
    "aac": "m=audio 0 RTP/AVP 97\r\na=rtpmap:97 mpeg4-generic/48000/2\r\n"
    "a=fmtp:97 streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;"
    "indexdeltalength=3;config=1190\r\n",
    "latm": "m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MP4A-LATM/48000/2\r\n"
    "a=fmtp:97 profile-level-id=1;cpresent=0;config=400023203fc0\r\n",
    "opus": "m=audio 0 RTP/AVP 97\r\na=rtpmap:97 opus/48000/2\r\n",
}


def _live(codec: str) -> Callable[[bytes], None]:
    description = parse_sdp(_HEAD + LIVE_SDP[codec])
    tracks = announced_tracks(description.media)
    assert tracks[0].depacketize, f"{codec} would only be relayed"
    max_payload = tracks[0].payload_format.max_payload_size

    def target(data: bytes) -> None:
        live = LivePath.from_announce("live/fuzz", description, tracks, "fuzz")
        live.online = True
        sent: list[bytes] = []
        live.readers.add(lambda _i, _t, payloads, _k, _l: sent.extend(p for p, _m in payloads))
        track = live.tracks[0]
        assert track.depacketizer is not None
        for packet in framed(data):
            live.on_rtp(track, packet)
        assert all(len(p) <= max_payload for p in sent)

    target.__doc__ = f"{codec} RTP from a publisher: never raises; readers get payloads that fit."
    return target


fuzz_rtp_h264 = _live("h264")
fuzz_rtp_h265 = _live("h265")
fuzz_rtp_aac = _live("aac")
fuzz_rtp_latm = _live("latm")
fuzz_rtp_opus = _live("opus")


# --- the other depacketizers, directly -------------------------------------------------------


def _direct(factory: Callable[[], Depacketizer]) -> Callable[[bytes], None]:
    def target(data: bytes) -> None:
        depacketizer = factory()
        for raw in framed(data):
            try:
                packet = RtpPacket.parse(raw)
            except ValueError:
                continue  # what every receiver does with a datagram that is not RTP
            units = depacketizer.push(
                packet.payload, bool(packet.marker), packet.timestamp, packet.sequence_number
            )
            for unit in units:
                assert isinstance(unit, DepacketizedUnit) and isinstance(unit.data, bytes)
                assert len(unit.data) <= MAX_UNIT_SIZE + 65536
                assert 0 <= unit.timestamp <= 0xFFFFFFFF

    target.__doc__ = f"{factory.__name__}: arbitrary packets never raise; only well-formed units come out."
    return target


fuzz_rtp_av1 = _direct(Av1Depacketizer)
fuzz_rtp_vp8 = _direct(Vp8Depacketizer)
fuzz_rtp_vp9 = _direct(Vp9Depacketizer)
fuzz_rtp_mjpeg = _direct(MjpegDepacketizer)
fuzz_rtp_mpeg_video = _direct(MpegVideoDepacketizer)
fuzz_rtp_mpeg_audio = _direct(MpegAudioDepacketizer)
fuzz_rtp_ac3 = _direct(Ac3Depacketizer)
fuzz_rtp_mp2t = _direct(Mp2tDepacketizer)


def _l16_stereo() -> Depacketizer:
    return PcmDepacketizer(4)


fuzz_rtp_pcm = _direct(_l16_stereo)
