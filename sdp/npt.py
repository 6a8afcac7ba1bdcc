"""Normal play time as text (RFC 2326 3.6, RFC 8866 a=range): shared by SDP, RTSP and RTP."""

from __future__ import annotations

from fractions import Fraction


def format_npt(seconds: Fraction) -> str:
    """Decimal seconds rounded to milliseconds, without trailing zeros: ``0``, ``12.5``, ``3.042``."""
    millis = round(Fraction(seconds) * 1000)
    if millis < 0:
        raise ValueError(f"negative npt time {seconds}")
    whole, frac = divmod(millis, 1000)
    return f"{whole}.{frac:03d}".rstrip("0") if frac else str(whole)
