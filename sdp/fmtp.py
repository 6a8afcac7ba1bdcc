"""Grammars of the two attribute values every RTP media section carries: rtpmap and fmtp.

They live apart from the line parser because payload-format modules build and read them on
their own, and because their syntax is defined by RFC 8866 section 6.6 (rtpmap) and by each
payload format's RFC (fmtp), not by the SDP line grammar. Malformed values raise ``ValueError``:
the SDP parser keeps attribute values raw, so a bad fmtp never makes a whole description unusable.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

__all__ = [
    "FmtpParams",
    "RtpMap",
    "format_fmtp",
    "format_rtpmap",
    "parse_fmtp",
    "parse_rtpmap",
    "static_rtpmap",
]

# RFC 3551 tables 4 and 5: the static payload types, which a description may use without an
# a=rtpmap line (encoding name, clock rate, channels for audio)
_STATIC: dict[int, tuple[str, int, str | None]] = {
    0: ("PCMU", 8000, "1"), 3: ("GSM", 8000, "1"), 4: ("G723", 8000, "1"), 5: ("DVI4", 8000, "1"),
    6: ("DVI4", 16000, "1"), 7: ("LPC", 8000, "1"), 8: ("PCMA", 8000, "1"), 9: ("G722", 8000, "1"),
    10: ("L16", 44100, "2"), 11: ("L16", 44100, "1"), 12: ("QCELP", 8000, "1"), 13: ("CN", 8000, "1"),
    14: ("MPA", 90000, None), 15: ("G728", 8000, "1"), 16: ("DVI4", 11025, "1"),
    17: ("DVI4", 22050, "1"), 18: ("G729", 8000, "1"), 25: ("CelB", 90000, None),
    26: ("JPEG", 90000, None), 28: ("nv", 90000, None), 31: ("H261", 90000, None),
    32: ("MPV", 90000, None), 33: ("MP2T", 90000, None), 34: ("H263", 90000, None),
}  # fmt: skip


def _is_uint(text: str) -> bool:
    # str.isdigit() alone accepts non-ASCII digits such as "٣" that int() would then parse.
    return text.isascii() and text.isdigit() and len(text) <= 20


@dataclass(frozen=True, slots=True)
class RtpMap:
    """``a=rtpmap:<pt> <encoding name>/<clock rate>[/<encoding parameters>]``.

    ``encoding_params`` stays a string: for audio it is the channel count, for other media its
    meaning belongs to the payload format.
    """

    payload_type: int
    encoding_name: str
    clock_rate: int
    encoding_params: str | None = None

    @property
    def channels(self) -> int | None:
        """The audio channel count, when the encoding parameters are one."""
        if self.encoding_params is not None and _is_uint(self.encoding_params):
            return int(self.encoding_params)
        return None


def static_rtpmap(payload_type: int) -> RtpMap | None:
    """What RFC 3551 assigns to a static payload type; None for unassigned and dynamic ones."""
    found = _STATIC.get(payload_type)
    return RtpMap(payload_type, *found) if found else None


def parse_rtpmap(value: str) -> RtpMap:
    """Parse the value of an ``a=rtpmap`` attribute (everything after ``rtpmap:``)."""
    pieces = value.strip().split(None, 1)
    if len(pieces) != 2:
        raise ValueError(f"rtpmap {value!r}: expected '<payload type> <encoding>/<clock rate>'")
    pt_text, encoding = pieces
    if not _is_uint(pt_text) or int(pt_text) > 127:
        raise ValueError(f"rtpmap {value!r}: payload type {pt_text!r} is not an integer 0..127")
    parts = encoding.strip().split("/")
    if len(parts) not in (2, 3) or not parts[0]:
        raise ValueError(f"rtpmap {value!r}: expected '<encoding>/<clock rate>[/<parameters>]'")
    if not _is_uint(parts[1]):
        raise ValueError(f"rtpmap {value!r}: clock rate {parts[1]!r} is not an integer")
    params = parts[2] if len(parts) == 3 and parts[2] else None
    return RtpMap(int(pt_text), parts[0], int(parts[1]), params)


def format_rtpmap(rtpmap: RtpMap) -> str:
    """The ``a=rtpmap`` attribute value for ``rtpmap``."""
    text = f"{rtpmap.payload_type} {rtpmap.encoding_name}/{rtpmap.clock_rate}"
    if rtpmap.encoding_params is not None:
        text += f"/{rtpmap.encoding_params}"
    return text


class FmtpParams(Mapping[str, str]):
    """Format parameters in their original order and spelling, looked up case-insensitively.

    Payload-format RFCs define parameter names as case-insensitive (RFC 6184, RFC 3640), yet
    clients echo what they received, so keys keep the sender's spelling. When a name repeats
    (in any case), the first occurrence wins.
    """

    __slots__ = ("_index", "_items")

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._items: dict[str, str] = {}
        self._index: dict[str, str] = {}  # lower-cased name -> name as spelt
        for key, value in pairs:
            folded = key.lower()
            if folded not in self._index:
                self._index[folded] = key
                self._items[key] = value

    def __getitem__(self, key: str) -> str:
        return self._items[self._index[key.lower()]]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"FmtpParams({self._items!r})"


def parse_fmtp(value: str) -> tuple[str, FmtpParams]:
    """Parse an ``a=fmtp`` value into its format (payload type) and ``key=value`` parameters.

    Only the first ``=`` of a parameter separates name from value, because values such as
    base64 ``sprop-parameter-sets`` end in padding ``=``. Whitespace around ``;`` is tolerated;
    a parameter without ``=`` (e.g. telephone-event's ``0-15``) becomes a name with value "".
    """
    pieces = value.strip().split(None, 1)
    if not pieces:
        raise ValueError("fmtp: empty value, expected '<format> <parameters>'")
    fmt = pieces[0]
    params: list[tuple[str, str]] = []
    if len(pieces) == 2:
        for item in pieces[1].split(";"):
            key, _, val = item.partition("=")
            key = key.strip()
            if key:
                params.append((key, val.strip()))
    return fmt, FmtpParams(params)


def format_fmtp(fmt: int | str, params: Mapping[str, str]) -> str:
    """The ``a=fmtp`` value for format ``fmt``; a parameter whose value is "" is written bare."""
    body = ";".join(f"{k}={v}" if v != "" else k for k, v in params.items())
    return f"{fmt} {body}" if body else str(fmt)
