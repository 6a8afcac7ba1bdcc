"""Time arithmetic for RTP: exact media time to RTP ticks, and wall time to NTP.

Media time is kept as exact rationals (``Fraction`` seconds or integer ticks of a track's
time base); floats only appear at the wall-clock edge, where the OS gives us one.
"""

from __future__ import annotations

import math
from fractions import Fraction

RTP_TS_MOD = 1 << 32
RTP_SEQ_MOD = 1 << 16
NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 (NTP) to 1970-01-01 (Unix)


def seconds_to_rtp(seconds: Fraction, clock_rate: int) -> int:
    """Media seconds -> RTP clock ticks (rounded to the nearest tick; may be negative)."""
    return round(seconds * clock_rate)


def rtp_timestamp(offset: int, ticks: int, time_base: Fraction, clock_rate: int) -> int:
    """RTP timestamp for a PTS: random offset + PTS in the RTP clock, modulo 2^32 (RFC 3550 5.1)."""
    return (offset + round(ticks * time_base * clock_rate)) % RTP_TS_MOD


def unix_to_ntp(unix_seconds: float) -> int:
    """Unix time -> 64-bit NTP timestamp (32.32 fixed point) as used in RTCP sender reports."""
    frac, whole = math.modf(unix_seconds)
    seconds = int(whole) + NTP_EPOCH_OFFSET
    fraction = int(frac * (1 << 32))
    return ((seconds & 0xFFFFFFFF) << 32) | (fraction & 0xFFFFFFFF)


def ntp_middle32(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp: what LSR in a receiver report echoes."""
    return (ntp >> 16) & 0xFFFFFFFF


def ntp_to_unix(ntp: int) -> float:
    return (ntp >> 32) - NTP_EPOCH_OFFSET + (ntp & 0xFFFFFFFF) / (1 << 32)
