"""RTCP compound packets we send (SR + SDES, BYE; a relay's RR + SDES; RR + PLI) and lenient parsing.

Packet layouts come from aiortc's RTCP classes; this module only composes them and adds
the leniency real clients need (e.g. SDES chunks without the END item).
"""

from __future__ import annotations

import logging
import struct

from aiortc.rtp import (
    RTCP_PSFB_PLI,
    AnyRtcpPacket,
    RtcpByePacket,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
)

log = logging.getLogger(__name__)

SDES_CNAME = 1


def sender_report(
    ssrc: int, ntp_timestamp: int, rtp_timestamp: int, packet_count: int, octet_count: int, cname: str
) -> bytes:
    """A compound SR + SDES(CNAME) packet (RFC 3550 6.1: every compound starts with SR/RR)."""
    sr = RtcpSrPacket(
        ssrc=ssrc,
        sender_info=RtcpSenderInfo(
            ntp_timestamp=ntp_timestamp,
            rtp_timestamp=rtp_timestamp,
            packet_count=packet_count & 0xFFFFFFFF,
            octet_count=octet_count & 0xFFFFFFFF,
        ),
    )
    return bytes(sr) + _sdes(ssrc, cname)


def goodbye(
    ssrc: int, ntp_timestamp: int, rtp_timestamp: int, packet_count: int, octet_count: int, cname: str
) -> bytes:
    """SR + SDES + BYE: tells players the stream ended (ffmpeg waits for it at end of file)."""
    report = sender_report(ssrc, ntp_timestamp, rtp_timestamp, packet_count, octet_count, cname)
    return report + bytes(RtcpByePacket(sources=[ssrc]))


def receiver_report(ssrc: int, blocks: list[RtcpReceiverInfo], cname: str, *, bye: bool = False) -> bytes:
    """RR + SDES(CNAME) (+ BYE): what a receiver (our relay, upstream) tells the sender."""
    report = bytes(RtcpRrPacket(ssrc=ssrc, reports=blocks[:31])) + _sdes(ssrc, cname)
    return report + bytes(RtcpByePacket(sources=[ssrc])) if bye else report


def picture_loss(ssrc: int, media_ssrc: int, cname: str) -> bytes:
    """RR + SDES(CNAME) + PSFB PLI (RFC 4585 6.3.1, FMT 1): asks the sender of ``media_ssrc``
    for a keyframe. The RR (no blocks) comes first, as RFC 3550 6.1 wants of every compound."""
    pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=ssrc, media_ssrc=media_ssrc)
    return receiver_report(ssrc, [], cname) + bytes(pli)


def _sdes(ssrc: int, cname: str) -> bytes:
    return bytes(
        RtcpSdesPacket(chunks=[RtcpSourceInfo(ssrc=ssrc, items=[(SDES_CNAME, cname.encode()[:255])])])
    )


def parse_compound(data: bytes) -> list[AnyRtcpPacket]:
    """Parse an RTCP compound packet, keeping every well-formed part.

    aiortc rejects a whole compound when one part is off (an SDES chunk lacking its END item,
    an unknown packet type with odd padding); we split on the length fields and parse the
    parts one by one, skipping those that fail, so a receiver report is never lost to them.
    """
    try:
        return RtcpPacket.parse(data)
    except ValueError:
        pass
    packets: list[AnyRtcpPacket] = []
    pos = 0
    while pos + 4 <= len(data):
        first, _ptype, length = struct.unpack_from("!BBH", data, pos)
        end = pos + 4 + length * 4
        if first >> 6 != 2 or end > len(data):
            break
        try:
            packets.extend(RtcpPacket.parse(data[pos:end]))
        except ValueError as exc:
            log.debug("skipping malformed RTCP part: %s", exc)
        pos = end
    return packets
