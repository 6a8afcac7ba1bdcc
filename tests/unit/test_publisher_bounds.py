"""Bounds on what one publisher can make the server do (issue 12 item 3), without sockets."""

from __future__ import annotations

import struct

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sdp import parse as parse_sdp
from streamd.limits import WorkBudget
from streamd.live.announced import announced_tracks
from streamd.live.hub import LivePath
from streamd.rtp.payload.aac import AacDepacketizer, header_widths
from streamd.rtp.payload.assembly import split_aggregate
from streamd.rtp.payload.base import MAX_UNITS_PER_PACKET
from streamd.rtsp.errors import RtspError

AAC_SDP = (
    "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\nm=audio 0 RTP/AVP 96\r\n"
    "a=rtpmap:96 mpeg4-generic/48000/2\r\na=fmtp:96 streamtype=5;config=1190;{}\r\na=control:trackID=0\r\n"
)
HBR = "mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3"


def hbr_payload(units: int) -> bytes:
    return struct.pack("!H", units * 16) + struct.pack("!H", 1 << 3) * units + b"\x21" * units


@pytest.mark.parametrize(
    "fmtp",
    [
        "sizelength=1;indexlength=0;indexdeltalength=0",  # the attack: 58,000 AUs in one packet
        "mode=AAC-hbr;sizelength=6;indexlength=2;indexdeltalength=2",
        "mode=AAC-lbr;sizelength=13",
        "sizelength=13;indexlength=30",
        "sizelength=x",
        "sizelength=\u0661\u0663",  # non-ASCII digits
    ],
)
def test_announced_au_header_widths_outside_the_modes_are_refused(fmtp: str) -> None:
    with pytest.raises(RtspError) as refused:
        announced_tracks(parse_sdp(AAC_SDP.format(fmtp)).media)
    assert refused.value.status == 400 and "mpeg4-generic" in refused.value.reason


@pytest.mark.parametrize(
    ("fmtp", "widths"),
    [
        (HBR, (13, 3, 3)),
        ("mode=AAC-lbr;sizelength=6;indexlength=2;indexdeltalength=2", (6, 2, 2)),
        ("mode=generic;sizelength=16;indexlength=0;indexdeltalength=0", (16, 0, 0)),
        ("", (13, 3, 3)),
    ],
)
def test_what_rfc_3640_modes_allow_is_accepted(fmtp: str, widths: tuple[int, int, int]) -> None:
    fields = dict(part.split("=", 1) for part in fmtp.split(";") if part)
    assert header_widths({k.lower(): v for k, v in fields.items()}) == widths
    assert announced_tracks(parse_sdp(AAC_SDP.format(fmtp)).media)[0].depacketize


@given(st.dictionaries(st.sampled_from(["mode", "sizelength", "indexlength", "indexdeltalength"]), st.text()))
@example({"sizelength": "1", "indexlength": "0", "indexdeltalength": "0"})
def test_header_widths_are_bounded_or_refused(fmtp: dict[str, str]) -> None:
    try:
        size, index, delta = header_widths(fmtp)
    except ValueError:
        return
    assert 6 <= size <= 16 and 0 <= index <= 8 and 0 <= delta <= 8


def test_aac_packets_with_too_many_aus_are_dropped() -> None:
    depacketizer = AacDepacketizer()
    assert len(depacketizer.push(hbr_payload(MAX_UNITS_PER_PACKET), True, 0, 1)) == MAX_UNITS_PER_PACKET
    assert depacketizer.push(hbr_payload(MAX_UNITS_PER_PACKET + 1), True, 1024, 2) == []
    assert depacketizer.push(hbr_payload(4095), True, 2048, 3) == []


def test_aggregation_packets_with_too_many_units_are_dropped() -> None:
    def stap(units: int) -> bytes:
        return b"\x18" + b"\x00\x01\x41" * units

    assert len(split_aggregate(stap(MAX_UNITS_PER_PACKET), 1)) == MAX_UNITS_PER_PACKET
    assert split_aggregate(stap(MAX_UNITS_PER_PACKET + 1), 1) == []


def test_work_budget_refills_at_its_rate() -> None:
    budget = WorkBudget(rate=100)
    assert budget.spend(100, now=0.0)
    assert not budget.spend(1, now=0.0)
    assert budget.spend(49, now=0.5)  # 50 back, one already owed
    assert not budget.spend(60, now=0.6)
    assert budget.spend(0, now=10.0) and budget.spend(100, now=10.0)  # never more than the burst


def aac_path() -> LivePath:
    description = parse_sdp(AAC_SDP.format(HBR))
    live = LivePath.from_announce("live/aac", description, announced_tracks(description.media), "s1")
    live.online = True
    live.budget = WorkBudget(rate=1000)
    live.clock = lambda: 0.0  # no refill while the test sends: the counts do not depend on its speed
    return live


def rtp(seq: int, payload: bytes) -> bytes:
    return struct.pack("!BBHII", 0x80, 0x80 | 96, seq, seq * 1024, 0x1234) + payload


def test_a_publisher_over_its_budget_is_dropped_once() -> None:
    live = aac_path()
    dropped: list[str] = []
    live.on_overload = dropped.append
    got: list[int] = []
    live.readers.add(lambda index, ticks, payloads, key, leading: got.append(len(payloads)))
    for seq in range(10):  # 10 x (1 packet + 100 units + 100 payloads) > 1000
        live.on_rtp(live.tracks[0], rtp(seq, hbr_payload(100)))
    assert len(dropped) == 1 and "1000" in dropped[0] and live.overloaded
    assert len(got) == 500  # nothing is fanned out once the publisher is dropped


def test_without_a_hook_packets_beyond_the_budget_are_shed() -> None:
    live = aac_path()
    got: list[int] = []
    live.readers.add(lambda index, ticks, payloads, key, leading: got.append(len(payloads)))
    for seq in range(10):
        live.on_rtp(live.tracks[0], rtp(seq, hbr_payload(100)))
    assert len(got) == 500 and not live.overloaded  # a relay's path is not dropped, it sheds
