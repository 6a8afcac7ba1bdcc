"""A relay's receiver reports to its upstream (``streamd.live.upstream_reports``)."""

from __future__ import annotations

import struct

from aiortc.rtp import RtcpByePacket, RtcpRrPacket, RtcpSdesPacket

from streamd.live.upstream_reports import UpstreamReports
from streamd.rtp.rtcp import parse_compound


def rtp(seq: int, timestamp: int, ssrc: int = 0x1234) -> bytes:
    return struct.pack("!BBHII", 0x80, 96, seq, timestamp, ssrc) + b"payload"


def test_reports_count_loss_per_track_and_say_bye() -> None:
    reports = UpstreamReports("streamd@test")
    reports.add_track(0, 90000)
    reports.add_track(1, 48000)  # never hears from its sender: no report for it
    for seq in [*range(100, 150), *range(151, 200)]:  # seq 150 lost
        reports.on_rtp(0, rtp(seq, seq * 3600), seq / 25)
    reports.on_rtp(0, b"\x00" * 8, 0.0)  # not RTP: ignored
    reports.on_sender_report(0, 0x1234, 0x0001_0002_0003_0004, 10.0)
    [(index, data)] = reports.reports(10.5)
    assert index == 0
    rr, sdes = parse_compound(data)
    assert isinstance(rr, RtcpRrPacket) and isinstance(sdes, RtcpSdesPacket)
    assert rr.ssrc == reports.ssrc
    [block] = rr.reports
    assert block.ssrc == 0x1234 and block.packets_lost == 1 and block.highest_sequence == 199
    assert block.lsr == 0x0002_0003 and block.dlsr == 65536 // 2
    *_, bye = parse_compound(reports.reports(11.0, bye=True)[0][1])
    assert isinstance(bye, RtcpByePacket) and bye.sources == [reports.ssrc]


def test_a_new_sender_starts_the_statistics_over() -> None:
    reports = UpstreamReports("x")
    reports.add_track(0, 90000)
    for seq in range(10):
        reports.on_rtp(0, rtp(seq * 2, 0, ssrc=1), seq)  # half lost
    for seq in range(500, 520):
        reports.on_rtp(0, rtp(seq, 0, ssrc=2), 20 + seq)
    [(_, data)] = reports.reports(600.0)
    [block] = parse_compound(data)[0].reports
    assert block.ssrc == 2 and block.packets_lost == 0
