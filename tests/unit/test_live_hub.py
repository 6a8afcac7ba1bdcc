"""The fan-out point of a live path (``streamd.live.hub``), without sockets."""

from __future__ import annotations

import struct

from sdp import parse as parse_sdp
from streamd.live.announced import announced_tracks
from streamd.live.hub import LivePath
from streamd.rtp.clock import unix_to_ntp

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
    live.readers.add(lambda index, ticks, payloads, key: got.append((index, ticks, payloads)))
    live.unit_listeners.add(lambda track, au: units.append(au.data))
    live.on_rtp(live.tracks[0], rtp(7, 1000))
    live.on_rtp(live.tracks[0], rtp(8, 1960))
    assert [ticks for _, ticks, _ in got] == [0, 960]
    assert units == [b"\xfc\x01\x02"] * 2
