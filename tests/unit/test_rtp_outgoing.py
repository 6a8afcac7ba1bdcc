"""Sender-side RTP/RTCP: timestamps, numbering, sender reports, BYE, receiver-report feedback."""

from __future__ import annotations

from fractions import Fraction

from aiortc.rtp import RtcpByePacket, RtcpReceiverInfo, RtcpRrPacket, RtcpSdesPacket, RtcpSrPacket, RtpPacket
from hypothesis import given
from hypothesis import strategies as st

from media.access_unit import AccessUnit
from streamd.rtp.clock import ntp_middle32, ntp_to_unix, rtp_timestamp, unix_to_ntp
from streamd.rtp.outgoing import OutgoingStream
from streamd.rtp.payload.base import PayloadFormat
from streamd.rtp.rtcp import parse_compound


class FakeFormat(PayloadFormat):
    """Splits the AU into 10-byte payloads: enough to test numbering and counting."""

    encoding_name = "X"
    clock_rate = 90000
    encoding_params = None
    media = "video"

    def rtpmap(self) -> str:
        return f"{self.payload_type} X/90000"

    def fmtp(self) -> str | None:
        return None

    def packetize(self, au: AccessUnit) -> list[tuple[bytes, bool]]:
        chunks = [au.data[i : i + 10] for i in range(0, len(au.data), 10)]
        return [(c, i == len(chunks) - 1) for i, c in enumerate(chunks)]

    def depacketizer(self):  # pragma: no cover - not needed here
        raise NotImplementedError


def stream(**kw) -> OutgoingStream:
    return OutgoingStream(FakeFormat(96), Fraction(1, 1000), cname="c@h", **kw)


def test_packets_are_numbered_and_stamped() -> None:
    s = stream(ssrc=0x11223344, next_seq=65534, ts_offset=2**32 - 90)
    packets = [RtpPacket.parse(p) for p in s.packetize(AccessUnit(0, 1, 1, True, bytes(25)))]
    assert [p.sequence_number for p in packets] == [65534, 65535, 0]
    assert {p.timestamp for p in packets} == {0}  # offset + 1 ms * 90 kHz wraps to 0
    assert [p.marker for p in packets] == [0, 0, 1]
    assert {p.ssrc for p in packets} == {0x11223344}
    assert s.packet_count == 3 and s.octet_count == 25 and s.next_seq == 1


def test_negative_pts_wraps_modulo() -> None:
    assert rtp_timestamp(0, -1024, Fraction(1, 48000), 48000) == 2**32 - 1024


def test_sender_report_and_bye() -> None:
    s = stream(ssrc=7, ts_offset=1000)
    s.packetize(AccessUnit(0, 0, 0, True, bytes(10)))
    ntp = unix_to_ntp(1_700_000_000.25)
    parts = parse_compound(s.sender_report(ntp, Fraction(2)))
    sr, sdes = parts
    assert isinstance(sr, RtcpSrPacket) and isinstance(sdes, RtcpSdesPacket)
    assert sr.ssrc == 7 and sr.sender_info.ntp_timestamp == ntp
    assert sr.sender_info.rtp_timestamp == 1000 + 2 * 90000
    assert sr.sender_info.packet_count == 1 and sr.sender_info.octet_count == 10
    assert sdes.chunks[0].items == [(1, b"c@h")]
    bye = parse_compound(s.goodbye(ntp, Fraction(3)))
    assert isinstance(bye[-1], RtcpByePacket) and bye[-1].sources == [7]


def test_receiver_report_gives_loss_jitter_rtt() -> None:
    s = stream(ssrc=9)
    sent = unix_to_ntp(1_700_000_000.0)
    s.sender_report(sent, Fraction(0))
    arrival = unix_to_ntp(1_700_000_000.5)
    info = RtcpReceiverInfo(
        ssrc=9,
        fraction_lost=64,
        packets_lost=12,
        highest_sequence=1000,
        jitter=900,
        lsr=ntp_middle32(sent),
        dlsr=int(0.4 * 65536),
    )
    s.reception.update(info, 90000, arrival, s.sr_sent_at(info.lsr))
    assert s.reception.fraction_lost == 0.25
    assert s.reception.cumulative_lost == 12
    assert s.reception.jitter_ms == 10.0
    assert abs(s.reception.rtt_ms - 100.0) < 0.1


def test_lenient_rtcp_parse_keeps_rr_despite_broken_sdes() -> None:
    rr = bytes(RtcpRrPacket(ssrc=1, reports=[RtcpReceiverInfo(9, 0, 0, 5, 0, 0, 0)]))
    sdes_without_end = b"\x81\xca\x00\x02" + b"\x00\x00\x00\x01" + b"\x01\x02ab"
    packets = parse_compound(rr + sdes_without_end)
    assert isinstance(packets[0], RtcpRrPacket) and packets[0].reports[0].ssrc == 9


@given(st.binary(max_size=300))
def test_rtcp_parse_never_raises(data: bytes) -> None:
    parse_compound(data)


@given(st.floats(min_value=0, max_value=2_000_000_000, allow_nan=False))  # NTP era 0 (to 2036)
def test_ntp_round_trip(t: float) -> None:
    assert abs(ntp_to_unix(unix_to_ntp(t)) - t) < 1e-6


@given(
    st.integers(-(10**9), 10**12),
    st.sampled_from([Fraction(1, 90000), Fraction(1, 12800), Fraction(1, 48000), Fraction(1001, 30000)]),
    st.fractions(min_value=0, max_value=10**5, max_denominator=1000),
    st.fractions(min_value=0, max_value=10**5, max_denominator=1000),
    st.sampled_from([Fraction(1), Fraction(2), Fraction(1, 2), Fraction(8)]),
)
def test_integer_timestamps_equal_exact_arithmetic(pts, time_base, media_anchor, rtp_anchor, scale) -> None:
    from streamd.rtp.timeline import Timeline

    s = OutgoingStream(FakeFormat(96), time_base, cname="c", ts_offset=12345)
    s.timeline = Timeline(media_anchor, rtp_anchor, scale)
    exact = Timeline(media_anchor, rtp_anchor, scale).rtp_seconds(pts * time_base) * 90000
    assert abs(((s.timestamp_for(pts) - 12345 - exact) + 2**31) % 2**32 - 2**31) <= Fraction(1, 2)


def test_payload_memo_packetizes_cached_units_once() -> None:
    from streamd.rtp.outgoing import PayloadMemo

    calls = []

    class Counting(FakeFormat):
        def packetize(self, au: AccessUnit) -> list[tuple[bytes, bool]]:
            calls.append(au)
            return super().packetize(au)

    fmt = Counting(96)
    cached_au = AccessUnit(0, 0, 0, True, bytes(25))
    memo = PayloadMemo(frozenset({id(cached_au)}))
    a = OutgoingStream(fmt, Fraction(1, 1000), cname="a", payload_memo=memo)
    b = OutgoingStream(fmt, Fraction(1, 1000), cname="b", payload_memo=memo)
    pa, pb = a.packetize(cached_au), b.packetize(cached_au)
    assert len(calls) == 1  # two sessions, one packetization
    assert [p[12:] for p in pa] == [p[12:] for p in pb] and pa[0][8:12] != pb[0][8:12]  # own SSRCs
    other = AccessUnit(0, 40, 40, False, bytes(5))  # not a cached unit: never memoized
    a.packetize(other)
    b.packetize(other)
    assert len(calls) == 3


@given(
    seq=st.integers(0, 0xFFFF),
    ts_offset=st.integers(0, 2**32 - 1),
    ssrc=st.integers(0, 2**32 - 1),
    payload_type=st.integers(0, 127),
    pts=st.integers(-(2**20), 2**40),
    size=st.integers(0, 40),
)
def test_struct_header_is_the_rtp_header(
    seq: int, ts_offset: int, ssrc: int, payload_type: int, pts: int, size: int
) -> None:
    """The hand-packed header is exactly what aiortc's RtpPacket serializes, field for field."""
    s = OutgoingStream(
        FakeFormat(payload_type), Fraction(1, 1000), cname="c", ssrc=ssrc, next_seq=seq, ts_offset=ts_offset
    )
    data = bytes(range(size))
    packets, offsets = s.packets(AccessUnit(0, pts, pts, True, data))
    assert offsets is None
    timestamp = s.timestamp_for(pts)
    expected = [
        RtpPacket(
            payload_type=payload_type,
            marker=int(i == len(packets) - 1),
            sequence_number=(seq + i) % 65536,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=data[10 * i : 10 * i + 10],
        ).serialize()
        for i in range(len(packets))
    ]
    assert packets == expected
    assert s.next_seq == (seq + len(packets)) % 65536


class PcmLikeFormat(FakeFormat):
    """Cuts an AU into 10-byte packets of 80 samples each (8 kHz): later packets start later."""

    clock_rate = 8000

    def packetize_timed(self, au: AccessUnit) -> list[tuple[bytes, bool, int]]:
        return [(p, m, 80 * i) for i, (p, m) in enumerate(self.packetize(au))]


def test_later_packets_carry_their_timestamp_offsets() -> None:
    s = OutgoingStream(PcmLikeFormat(97), Fraction(1, 8000), cname="c", ts_offset=2**32 - 100)
    packets, offsets = s.packets(AccessUnit(0, 0, 0, True, bytes(30)))
    assert offsets == [0, 80, 160]
    stamps = [RtpPacket.parse(p).timestamp for p in packets]
    assert stamps == [2**32 - 100, 2**32 - 20, 60]  # wrapping, offsets still exact
    assert s.packetize(AccessUnit(0, 240, 240, True, bytes(10))) and s.packet_count == 4


def test_prebuilt_payloads_share_the_sender_numbering_and_counters() -> None:
    """Live readers and the multicast send put headers on a path's payloads with the same sender."""
    s = stream(ssrc=5, next_seq=65535, ts_offset=2**32 - 1)
    packets = [RtpPacket.parse(p) for p in s.pack(3, [(b"ab", False), (b"cde", True)])]
    assert [p.sequence_number for p in packets] == [65535, 0]
    assert {p.timestamp for p in packets} == {2}
    assert [p.marker for p in packets] == [0, 1]
    assert s.packet_count == 2 and s.octet_count == 5
    s.packetize(AccessUnit(0, 0, 0, True, bytes(10)))
    assert s.packet_count == 3 and s.next_seq == 2
    old = (s.ssrc, s.ts_offset)
    s.renew()
    assert (s.ssrc, s.ts_offset) != old and s.packet_count == s.octet_count == 0


def test_random_timestamp_offsets_keep_away_from_the_wrap() -> None:
    from streamd.rtp.outgoing import WRAP_MARGIN

    offsets = [stream().ts_offset for _ in range(2000)]
    assert all(WRAP_MARGIN <= o < 2**32 - WRAP_MARGIN for o in offsets)
    assert len(set(offsets)) == len(offsets)
