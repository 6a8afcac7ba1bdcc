"""Receiver-report figures as RFC 3550 6.4.1 defines them (signed cumulative loss, fraction of a
negative loss is zero), whatever the receiver put in the fraction byte."""

from __future__ import annotations

from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket

from streamd.rtp.reception import ReceptionReport
from streamd.rtp.rtcp import parse_compound


def _block(fraction: int, lost: int, highest: int) -> RtcpReceiverInfo:
    return RtcpReceiverInfo(
        ssrc=7, fraction_lost=fraction, packets_lost=lost, highest_sequence=highest, jitter=0, lsr=0, dlsr=0
    )


def _wire(fraction: int, lost_field: bytes, highest: int) -> RtcpReceiverInfo:
    """A report block as received (the cumulative-lost field given as its three raw bytes)."""
    rr = bytearray(bytes(RtcpRrPacket(ssrc=1, reports=[_block(fraction, 0, highest)])))
    rr[8 + 5 : 8 + 8] = lost_field
    (packet,) = parse_compound(bytes(rr))
    return packet.reports[0]


def test_live555_duplicate_report_is_no_loss() -> None:
    """live555 clients: cumulative -1 (a duplicate) with fraction 255 means nothing was lost."""
    report = ReceptionReport()
    report.update(_wire(255, b"\xff\xff\xff", 100), 90000, 0, None)
    assert report.cumulative_lost == -1
    assert report.fraction_lost == 0.0
    assert report.as_dict()["fraction_lost"] == 0.0


def test_fraction_counts_only_when_the_interval_lost_packets() -> None:
    report = ReceptionReport()
    report.update(_block(64, 10, 100), 90000, 0, None)
    assert (report.fraction_lost, report.cumulative_lost) == (0.25, 10)
    report.update(_block(255, 9, 200), 90000, 0, None)  # one duplicate since: interval loss -1
    assert (report.fraction_lost, report.cumulative_lost) == (0.0, 9)
    report.update(_block(255, 9, 300), 90000, 0, None)  # nothing new lost
    assert report.fraction_lost == 0.0
    report.update(_block(26, 19, 400), 90000, 0, None)
    assert report.fraction_lost == 26 / 256


def test_cumulative_lost_is_signed_24_bit() -> None:
    report = ReceptionReport()
    report.update(_wire(0, b"\x80\x00\x00", 100), 90000, 0, None)
    assert report.cumulative_lost == -(1 << 23)
    report = ReceptionReport()
    report.update(_wire(0, b"\x7f\xff\xff", 100), 90000, 0, None)
    assert report.cumulative_lost == (1 << 23) - 1
    report = ReceptionReport()
    report.update(_block(0, 0xFFFFFE, 100), 90000, 0, None)  # an unsigned reading of -2
    assert report.cumulative_lost == -2
