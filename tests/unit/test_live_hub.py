"""The fan-out point of a live path (``streamd.live.hub``), without sockets."""

from __future__ import annotations

import struct
from fractions import Fraction
from types import SimpleNamespace

from media import h265
from media.access_unit import AccessUnit
from media.track import H265Config, Track
from sdp import parse as parse_sdp
from streamd.live.announced import AnnouncedTrack, announced_tracks
from streamd.live.hub import LivePath
from streamd.live.reader import LiveReader
from streamd.rtp.clock import unix_to_ntp
from streamd.rtp.outgoing import OutgoingStream
from streamd.rtp.payload.registry import payload_format_for
from tests.unit.test_h265_bitstream import PPS, SPS, VPS

SDP = """v=0\r
o=- 0 0 IN IP4 127.0.0.1\r
s=cam\r
t=0 0\r
m=audio 0 RTP/AVP 97\r
a=rtpmap:97 opus/48000/2\r
a=control:streamid=0\r
"""


def rtp(seq: int, timestamp: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 0x80 | 97, seq, timestamp, 0xABCD) + b"\xfc\x01\x02"


def live_path() -> LivePath:
    description = parse_sdp(SDP)
    live = LivePath.from_announce("live/cam", description, announced_tracks(description.media), "s1")
    live.online = True
    return live


def test_a_sender_report_before_the_first_packet_is_kept_for_it() -> None:
    """ffmpeg sends its first SR just before its first RTP packet: the wall-clock mapping (for
    readers' sender reports and recording) must not wait for the next SR, seconds later."""
    live = live_path()
    track = live.tracks[0]
    live.on_sender_report(track, unix_to_ntp(1000.0), 4_000_000_000 - 480)
    assert track.sender_ntp is None
    live.on_rtp(track, rtp(1, 4_000_000_000))
    assert track.sender_ntp == 1000.0 and track.sender_ts == -480  # 10 ms before the first packet
    live.on_rtp(track, rtp(2, (4_000_000_000 + 960) % 2**32))
    assert track.now_ticks(1000.03) == -480 + 1440


def test_units_reach_readers_and_unit_listeners() -> None:
    live = live_path()
    got, units = [], []
    live.readers.add(lambda index, ticks, payloads, key, leading: got.append((index, ticks, payloads)))
    live.unit_listeners.add(lambda track, au: units.append(au.data))
    live.on_rtp(live.tracks[0], rtp(7, 1000))
    live.on_rtp(live.tracks[0], rtp(8, 1960))
    assert [ticks for _, ticks, _ in got] == [0, 960]
    assert units == [b"\xfc\x01\x02"] * 2


def hevc_path() -> LivePath:
    track = Track(0, "video", "hevc", Fraction(1, 90000), config=H265Config((VPS,), (SPS,), (PPS,), None))
    announced = AnnouncedTrack(0, "trackID=0", track, payload_format_for(track, 96), True)
    live = LivePath.from_tracks("live/hevc", [announced], "s1")
    live.online = True
    return live


class Sink:
    def __init__(self) -> None:
        self.rtp: list[bytes] = []

    def send_rtp(self, packet: bytes) -> None:
        self.rtp.append(packet)

    def send_rtcp(self, packet: bytes) -> None:
        pass


def test_a_reader_joining_at_a_cra_skips_its_rasl_pictures() -> None:
    """Open-GOP HEVC: RASL pictures after a CRA refer to pictures before it, so a reader that
    started at that CRA cannot decode them and is not sent them; one that started earlier is."""
    live = hevc_path()
    fmt = live.tracks[0].announced.payload_format

    def reader() -> Sink:
        """A reader attached now (the path holds it); what it is sent lands in the sink."""
        sink = Sink()
        binding = SimpleNamespace(
            is_video=True, sink=sink, stream=OutgoingStream(fmt, Fraction(1, 90000), cname="t")
        )
        LiveReader(live, {0: binding}, "test").attach()  # type: ignore[dict-item]
        return sink

    def nal(kind: int) -> bytes:
        return bytes([kind << 1, 1, 0xAF, 0x00])

    def push(ticks: int, kind: int) -> None:
        live.push_unit(0, AccessUnit(0, ticks, ticks, kind in (19, 21), b"", (nal(kind),)))

    early_sink = reader()
    push(0, 19)  # IDR
    push(3000, 1)  # trailing picture
    late_sink = reader()
    push(9000, 21)  # CRA
    push(6000, 8)  # RASL
    push(7500, 9)  # RASL
    push(12000, 1)  # trailing picture
    push(10500, 8)  # RASL again, but now the reader is past its start: sent

    def pictures(sink: Sink) -> list[int]:
        """NAL types sent, parameter sets aside (they go with each IRAP in an aggregation packet)."""
        found = []
        for packet in sink.rtp:
            payload = packet[12:]
            if h265.nal_type(payload) != 48:
                found.append(h265.nal_type(payload))
                continue
            pos = 2
            while pos + 2 <= len(payload):
                size = int.from_bytes(payload[pos : pos + 2], "big")
                found.append(h265.nal_type(payload[pos + 2 : pos + 2 + size]))
                pos += 2 + size
        return [t for t in found if t < 32]

    types = [pictures(early_sink), pictures(late_sink)]
    assert types[0] == [19, 1, 21, 8, 9, 1, 8]
    assert types[1] == [21, 1, 8]
