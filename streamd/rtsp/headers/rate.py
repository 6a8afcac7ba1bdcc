"""The Scale and Speed headers (RFC 2326 12.34, 12.35): a decimal number, maybe signed."""

from __future__ import annotations

import re
from fractions import Fraction

from streamd.rtsp.errors import RtspError

_DECIMAL = re.compile(r"^\s*([+-]?(?:\d{1,6}(?:\.\d{0,6})?|\.\d{1,6}))\s*$")


def parse_rate(value: str, header: str) -> Fraction:
    """``"2"``, ``"-1.0"``, ``"0.5"`` -> Fraction; anything else is a 400 naming the header."""
    match = _DECIMAL.match(value)
    if match is None:
        raise RtspError(400, f"malformed {header} header {value[:40]!r}")
    return Fraction(match.group(1))


def format_rate(value: Fraction) -> str:
    """Decimal, up to three places, no trailing zeros but one decimal kept: ``2.0``, ``0.5``."""
    text = f"{float(value):.3f}".rstrip("0")
    return text + "0" if text.endswith(".") else text
