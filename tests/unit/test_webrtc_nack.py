"""NACKs of live WebRTC viewers answered from one history per path stream, without a network:
the history, each viewer's map of its numbers onto it, the rate limit, the NACK FCI as aiortc
parses it, and a viewer moved onto a late converter keeping its numbers and timestamps."""

from __future__ import annotations

import itertools
import struct
from dataclasses import replace
from fractions import Fraction

from aiortc.rtp import RTCP_RTPFB_NACK, RtcpPacket, RtcpRtpfbPacket
from hypothesis import given
from hypothesis import strategies as st

from media import h264
from media.access_unit import AccessUnit
from media.track import Track
from streamd.live.announced import AnnouncedTrack
from streamd.live.hub import LivePath
from streamd.playback import Binding
from streamd.rtp.outgoing import OutgoingStream
from streamd.rtp.payload.registry import payload_format_for
from streamd.rtp.presentation import StreamableTrack
from streamd.webrtc.live_reader import WebrtcLiveReader
from streamd.webrtc.nack import (
    MAX_PER_NACK,
    RESEND_BURST,
    Bucket,
    Histories,
    PacketHistory,
    ViewerSequence,
    lost_sequences,
)
from streamd.webrtc.sink import Renumbered, WebrtcSink
from tests.unit.test_webrtc_bframes import encoded
from tests.unit.webrtc_fakes import FakePeer


def _nack(*lost: int) -> RtcpRtpfbPacket:
    return RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=2, lost=list(lost))


# --- the history and one viewer's map ------------------------------------------------------------


def test_a_unit_handed_by_every_viewer_is_stored_once() -> None:
    history = PacketHistory(capacity=8)
    unit = [(b"a", False), (b"b", True)]
    assert history.add(0, unit, 0.0) == 0
    assert history.add(0, unit, 0.0) == 0  # the next viewer of the same unit
    assert history.add(90, [(b"c", True)], 0.0) == 2
    assert history.next == 3 and history.get(1, 0.0).payload == b"b"  # type: ignore[union-attr]


def test_the_history_keeps_the_last_packets_and_only_young_ones() -> None:
    history = PacketHistory(capacity=4, max_age=1.0)
    for n in range(6):
        history.add(n, [(bytes([n]), True)], float(n) / 10)
    assert history.get(1, 0.5) is None  # pushed out of the ring
    assert history.get(2, 0.5).payload == b"\x02"  # type: ignore[union-attr]
    assert history.get(6, 0.5) is None  # not sent yet
    assert history.get(5, 1.6) is None  # 1.1 s old: the browser gave up on it


def _sent(sequence: ViewerSequence, history: PacketHistory, seq: int, ticks: int, payloads, now=0.0):  # type: ignore[no-untyped-def]
    source = history.add(ticks, payloads, now)
    sequence.sent(seq, history, source, len(payloads), 1000, now)
    pt = sequence.payload_type
    return [
        struct.pack("!BBHII", 0x80, pt | (0x80 if m else 0), (seq + i) & 0xFFFF, 1000 + ticks, sequence.ssrc)
        + p
        for i, (p, m) in enumerate(payloads)
    ]


def test_a_viewer_that_skipped_packets_maps_its_numbers_across_the_gap() -> None:
    history = PacketHistory()
    viewer = ViewerSequence(ssrc=7, payload_type=102)
    first = _sent(viewer, history, 65534, 0, [(b"k1", False), (b"k2", True)])  # wraps to 0 next
    history.add(3000, [(b"skipped", True)], 0.0)  # its socket was congested: not sent to it
    second = _sent(viewer, history, 0, 6000, [(b"p1", True)])
    assert len(viewer.runs) == 2
    assert viewer.answer([65535, 0, 1], 0.1) == [first[1], second[0]]  # 1 never sent: nothing
    assert (viewer.resent, viewer.refused) == (2, 1)


def test_resends_are_rate_limited_per_viewer() -> None:
    history = PacketHistory()
    viewer = ViewerSequence(ssrc=7, payload_type=102)
    _sent(viewer, history, 0, 0, [(bytes([n]), False) for n in range(100)])
    storm = sum(len(viewer.answer(range(100), 0.5)) for _ in range(1000))
    assert storm == RESEND_BURST  # a thousand NACKs at once: no more than the burst
    assert len(viewer.answer(range(17), 0.6)) == 17  # 0.1 s later: 20 more tokens


def test_one_nack_resends_at_most_its_share() -> None:
    history = PacketHistory()
    viewer = ViewerSequence(ssrc=7, payload_type=102)
    _sent(viewer, history, 0, 0, [(bytes([n % 256]), False) for n in range(300)])
    assert len(viewer.answer(range(300), 0.0)) == MAX_PER_NACK


# --- the NACK FCI (RFC 4585 6.2.1) as aiortc parses it -----------------------------------------


@given(
    st.integers(0, 0xFFFFFFFF),
    st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)), max_size=20),
)
def test_nack_fci_names_pid_and_the_blp_bits_mod_2_16(ssrc: int, fci: list[tuple[int, int]]) -> None:
    payload = struct.pack("!II", 1, ssrc) + b"".join(struct.pack("!HH", pid, blp) for pid, blp in fci)
    header = struct.pack("!BBH", 0x80 | RTCP_RTPFB_NACK, 205, len(payload) // 4)
    (packet,) = RtcpPacket.parse(header + payload)
    assert isinstance(packet, RtcpRtpfbPacket) and packet.media_ssrc == ssrc
    expected: list[int] = []
    for pid, blp in fci:
        for seq in [pid] + [(pid + d + 1) & 0xFFFF for d in range(16) if blp >> d & 1]:
            if seq not in expected:
                expected.append(seq)
    assert lost_sequences(packet.lost) == expected


@given(st.binary(max_size=64))
def test_nack_garbage_is_refused_or_gives_16_bit_numbers(data: bytes) -> None:
    header = struct.pack("!BBH", 0x80 | RTCP_RTPFB_NACK, 205, len(data) // 4)
    try:
        packets = RtcpPacket.parse(header + data)
    except ValueError:
        return
    for packet in packets:
        if isinstance(packet, RtcpRtpfbPacket):
            assert all(0 <= seq <= 0xFFFF for seq in lost_sequences(packet.lost))


# --- viewers of a live path: one history, bit-exact resends ------------------------------------


def _path(units: list[AccessUnit], max_payload: int = 1400) -> LivePath:
    config = h264.config_from_nals(n for u in units for n in u.nal_units)
    track = Track(0, "video", "h264", Fraction(1, 90000), config=config)
    announced = AnnouncedTrack(0, "trackID=0", track, payload_format_for(track, 96, max_payload), True)
    live = LivePath.from_tracks("live/nack", [announced], "s1")
    live.online = True
    return live


def _viewer(
    live: LivePath, histories: Histories, converted=None
) -> tuple[WebrtcLiveReader, FakePeer, Binding]:  # type: ignore[no-untyped-def]
    track = live.tracks[0].announced
    peer = FakePeer()
    sink = WebrtcSink(peer, 102, video=True)  # type: ignore[arg-type]
    stream = OutgoingStream(Renumbered(track.payload_format, 102), Fraction(1, 90000), "c")  # type: ignore[arg-type]
    binding = Binding(StreamableTrack(track.track, track.payload_format, "trackID=0"), stream, sink)
    reader = WebrtcLiveReader(live, {0: binding}, "viewer", converted or {}, histories)
    reader.attach()
    return reader, peer, binding


def _seq(packet: bytes) -> int:
    return struct.unpack("!H", packet[2:4])[0]


def test_viewers_of_a_path_share_one_history_and_get_their_own_packets_back() -> None:
    units = encoded(0, frames=30)
    live = _path(units, max_payload=200)  # several packets a picture
    histories = Histories()
    early, early_peer, _ = _viewer(live, histories)
    for unit in units[:10]:
        live.push_unit(0, unit)
    asked: list[bool] = []
    live.request_keyframe = lambda: asked.append(True)
    late, late_peer, _ = _viewer(live, histories)  # joins mid-GOP: waits at the gate ...
    live.push_unit(0, units[10])
    assert not late.started and asked == [True]  # ... and asks the source for a keyframe
    live.push_unit(0, replace(units[0], pts=units[11].pts, dts=units[11].dts))  # the next IDR
    for unit in units[12:]:
        live.push_unit(0, unit)
    assert len(histories) == 1 and late.started
    for reader, peer in ((early, early_peer), (late, late_peer)):
        sent = list(peer.sent)
        sink = reader.bindings[0].sink
        assert isinstance(sink, WebrtcSink) and sink.history == {}  # no history of its own
        asked = [sent[-3], sent[-20], sent[-21]]
        sink.feedback(_nack(*(_seq(p) for p in asked)))
        assert peer.sent[len(sent) :] == asked  # byte for byte what it sent first
    early.detach(bye=False)
    late.detach(bye=False)
    assert len(histories) == 0


class FakeConverter:
    """What a reader needs of a converter: listeners, keyframe requests, its clock."""

    def __init__(self) -> None:
        self.listeners: set = set()
        self.asked = 0

    def request_keyframe(self) -> None:
        self.asked += 1

    def ticks(self, source_ticks: int) -> int:
        return source_ticks

    def deliver(self, ticks: int, payloads: list[tuple[bytes, bool]], key: bool) -> None:
        for listener in list(self.listeners):
            listener(0, ticks, payloads, key, False)


def test_a_viewer_moves_to_a_late_converter_at_its_keyframe_numbers_and_time_going_on() -> None:
    units = encoded(0, frames=12)
    live = _path(units)
    histories = Histories()
    reader, peer, binding = _viewer(live, histories)
    for unit in units[:6]:
        live.push_unit(0, unit)
    before = len(peer.sent)
    converter = FakeConverter()
    reader.convert(0, converter)  # type: ignore[arg-type]
    converter.deliver(units[1].pts, [(b"\x41converted-p", True)], key=False)  # not a keyframe: not yet
    live.push_unit(0, units[6])  # the hub's pictures go on until the converter's keyframe
    assert len(peer.sent) == before + 1
    converter.deliver(units[2].pts, [(b"\x65converted-idr", True)], key=True)  # lags behind the hub
    live.push_unit(0, units[7])  # the hub's are no longer for it
    converter.deliver(units[3].pts, [(b"\x41converted-p2", True)], key=False)
    new = peer.sent[before + 1 :]
    assert [p[12:] for p in new] == [b"\x65converted-idr", b"\x41converted-p2"]
    seqs = [_seq(p) for p in peer.sent]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))  # no gap
    stamps = [struct.unpack("!I", p[4:8])[0] for p in peer.sent]
    steps = [(b - a) & 0xFFFFFFFF for a, b in itertools.pairwise(stamps)]
    assert all(s < 2**31 for s in steps) and steps[before] > 0  # never back, and on at the switch
    assert steps[before + 1] == units[3].pts - units[2].pts  # the converter's own spacing after
    sink = binding.sink
    sent = list(peer.sent)
    sink.feedback(_nack(seqs[before - 1], seqs[-1]))  # one from each stream
    assert peer.sent[len(sent) :] == [sent[before - 1], sent[-1]]
    reader.detach(bye=False)
    assert len(histories) == 0


@given(
    st.integers(0, 0xFFFF),
    st.lists(st.tuples(st.integers(1, 5), st.booleans()), min_size=1, max_size=80),
    st.lists(st.integers(0, 0xFFFF), max_size=30),
)
def test_any_nack_gets_exactly_the_packets_the_viewer_sent(
    start: int, units: list[tuple[int, bool]], asked: list[int]
) -> None:
    """Units of 1-5 payloads, some skipped by this viewer (not sent to it), from any starting
    number (wrapping): a NACK for any numbers gets back, byte for byte, those the viewer sent
    that the history still holds, and nothing else."""
    history = PacketHistory(capacity=64)
    viewer = ViewerSequence(ssrc=9, payload_type=102, bucket=Bucket(burst=10_000, tokens=10_000))
    sent: dict[int, bytes] = {}
    seq = start
    for n, (count, skipped) in enumerate(units):
        payloads = [(bytes([n % 256, i]), i == count - 1) for i in range(count)]
        if skipped:
            history.add(n * 3000, payloads, 0.0)  # others got it
            continue
        for i, packet in enumerate(_sent(viewer, history, seq, n * 3000, payloads)):
            sent[(seq + i) & 0xFFFF] = packet
        seq = (seq + count) & 0xFFFF
    kept = {s: p for s, p in sent.items() if p[12:] in {h.payload for h in _kept(history)}}
    wanted = list(dict.fromkeys(asked + list(kept)))[:MAX_PER_NACK]
    assert viewer.answer(wanted, 0.5) == [kept[s] for s in wanted if s in kept]


def _kept(history: PacketHistory) -> list:  # type: ignore[type-arg]
    return [s for n in range(history.oldest(), history.next) if (s := history.get(n, 0.5)) is not None]


def test_a_viewer_is_told_once_when_the_hub_finds_b_frames_in_its_track() -> None:
    units = encoded(2, frames=12)
    live = _path(units)
    reader, _, _ = _viewer(live, Histories())
    told: list[int] = []
    reader.on_reordered = told.append
    for unit in units:
        live.push_unit(0, unit)
    assert live.tracks[0].order.reordered and told == [0]
