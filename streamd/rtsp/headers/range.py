"""The ``Range`` header in normal play time (RFC 2326 sections 3.6 and 12.29).

Times are exact :class:`~fractions.Fraction` seconds so a seek position survives the trip to
the demuxer's integer time base without float rounding. Only ``npt`` is supported: files and
live streams have no SMPTE time code, and absolute ``clock`` ranges make sense only for
recordings with a wall-clock origin, which we do not serve.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from sdp.npt import format_npt
from streamd.rtsp.errors import RtspError

__all__ = ["NptRange", "format_npt", "format_range", "parse_range"]

# Digit counts are capped: huge numbers are never meaningful and int() of them is costly. Hours
# stop at 11 digits so any h:mm:ss time, written back in seconds, still has at most 15.
_SECONDS = re.compile(r"(\d{1,15})?(?:\.(\d{0,15}))?", re.ASCII)
_HHMMSS = re.compile(r"(\d{1,11}):(\d{1,2}):(\d{1,2})(?:\.(\d{0,15}))?", re.ASCII)
_OTHER_UNITS = ("clock", "smpte")


@dataclass(frozen=True)
class NptRange:
    """``start``/``end`` in seconds; ``start`` is None only for ``now`` (live position)."""

    start: Fraction | None
    end: Fraction | None = None
    start_is_now: bool = False


def _fraction(whole: str | None, decimals: str | None) -> Fraction:
    value = Fraction(int(whole or "0"))
    if decimals:
        value += Fraction(int(decimals), 10 ** len(decimals))
    return value


def _npt_time(text: str, original: str) -> Fraction:
    text = text.strip()
    if (m := _HHMMSS.fullmatch(text)) is not None:
        hours, minutes, seconds, decimals = m.groups()
        if int(minutes) > 59 or int(seconds) > 59:
            raise RtspError(457, f"invalid npt time {text!r} in Range {original!r}")
        return int(hours) * 3600 + int(minutes) * 60 + _fraction(seconds, decimals)
    m = _SECONDS.fullmatch(text)
    if m is None or not (m.group(1) or m.group(2)):
        raise RtspError(457, f"invalid npt time {text!r} in Range {original!r}")
    return _fraction(m.group(1), m.group(2))


def parse_range(value: str) -> NptRange:
    """``npt=S-``, ``npt=S-E``, ``npt=-E`` (from 0), ``npt=now-``; a ``;time=`` parameter is ignored.

    Raises ``RtspError(457)`` for anything else, including other units.
    """
    original = value[:100]
    spec = value.split(";", 1)[0]
    unit, eq, times = spec.partition("=")
    unit = unit.strip().lower()
    if not eq:
        raise RtspError(457, f"malformed Range {original!r}")
    if unit.startswith(_OTHER_UNITS):
        raise RtspError(457, f"Range {original!r}: unsupported unit {unit!r}, only npt is supported")
    if unit != "npt":
        raise RtspError(457, f"Range {original!r}: unknown unit {unit!r}")
    first, dash, second = times.strip().partition("-")
    first, second = first.strip(), second.strip()
    if not dash or not (first or second):
        raise RtspError(457, f"malformed Range {original!r}")
    end = _npt_time(second, original) if second else None
    if first.lower() == "now":
        return NptRange(None, end, start_is_now=True)
    start = _npt_time(first, original) if first else Fraction(0)
    if end is not None and start > end:
        raise RtspError(457, f"Range {original!r} ends before it starts")
    return NptRange(start, end)


def format_range(r: NptRange) -> str:
    """``npt=0-12.5``, ``npt=3.2-``, ``npt=now-``."""
    start = "now" if r.start_is_now or r.start is None else format_npt(r.start)
    end = "" if r.end is None else format_npt(r.end)
    return f"npt={start}-{end}"
