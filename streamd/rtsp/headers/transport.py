"""The ``Transport`` header (RFC 2326 section 12.39, RFC 7826 section 18.54).

Parsing is deliberately lenient because every client writes this header a little differently:
``RTP/AVP`` and ``RTP/AVP/UDP`` both mean UDP, parameters come in any order, ``mode`` in any case
(``receive`` is an old spelling of ``RECORD``), a single port stands for an even/odd pair, and
``ssrc`` may be odd-length or space-padded hex. Unknown parameters are kept, not rejected; a
malformed alternative is skipped while the others still count, so the server can pick the first
one it supports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from streamd.rtsp.errors import RtspError

__all__ = ["TransportSpec", "format_transport", "parse_transport", "split_unquoted", "unquote"]

_TOKEN_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_-]*")
_HEX = re.compile(r"[0-9A-Fa-f]{1,16}")
_PLAIN_VALUE = re.compile(r'[^\s;,"]+')


@dataclass
class TransportSpec:
    """One transport alternative. Field names follow the RFC parameter names."""

    profile: str = "RTP/AVP"
    lower_transport: str = "UDP"
    cast: str | None = None
    client_port: tuple[int, int] | None = None
    server_port: tuple[int, int] | None = None
    interleaved: tuple[int, int] | None = None
    port: tuple[int, int] | None = None
    ttl: int | None = None
    destination: str | None = None
    source: str | None = None
    ssrc: int | None = None
    mode: str = "PLAY"
    append: bool = False
    extra: dict[str, str | None] = field(default_factory=dict)

    @property
    def is_tcp(self) -> bool:
        """True for interleaved transport on the RTSP connection."""
        return self.lower_transport == "TCP"


def split_unquoted(value: str, sep: str) -> list[str]:
    """Split on ``sep`` outside double-quoted strings (an unclosed quote runs to the end)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in value:
        if char == '"':
            quoted = not quoted
        if char == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def unquote(value: str) -> str:
    """``"x"`` -> ``x``; anything else is returned trimmed but unchanged."""
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].strip()
    return value


def _int(text: str, maximum: int, what: str) -> int:
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 10 or int(text) > maximum:
        raise ValueError(f"invalid {what} {text!r}")
    return int(text)


def _pair(text: str, maximum: int, what: str) -> tuple[int, int]:
    """``a-b``, or ``a`` meaning the pair ``(a, a+1)`` (RTP on even, RTCP on the next number)."""
    low, dash, high = text.partition("-")
    first = _int(low, maximum, what)
    second = _int(high, maximum, what) if dash else first + 1
    if second > maximum:
        raise ValueError(f"invalid {what} {text!r}")
    return first, second


def _ssrc(text: str) -> int:
    digits = unquote(text).split("/")[0].replace(" ", "").replace("\t", "")
    if not _HEX.fullmatch(digits) or int(digits, 16) > 0xFFFFFFFF:
        raise ValueError(f"invalid ssrc {text!r}")
    return int(digits, 16)


def _mode(text: str) -> str:
    modes = []
    for item in unquote(text).split(","):
        name = item.strip().upper()
        if not name:
            raise ValueError(f"invalid mode {text!r}")
        modes.append("RECORD" if name == "RECEIVE" else name)
    return ",".join(modes)


def _parse_protocol(text: str, spec: TransportSpec) -> None:
    parts = text.strip().upper().split("/")
    if len(parts) not in (2, 3) or not all(_TOKEN_PART.fullmatch(p) for p in parts):
        raise ValueError(f"invalid transport protocol {text.strip()!r}")
    if len(parts) == 3 and parts[2] not in ("UDP", "TCP"):
        raise ValueError(f"invalid lower transport {parts[2]!r}")
    spec.profile = "/".join(parts[:2])
    spec.lower_transport = parts[2] if len(parts) == 3 else "UDP"


def _parse_alternative(text: str) -> TransportSpec:
    protocol, *params = split_unquoted(text, ";")
    spec = TransportSpec()
    _parse_protocol(protocol, spec)
    for param in params:
        name, eq, raw = param.partition("=")
        name = name.strip().lower()
        value = raw.strip() if eq else None
        if not name:
            if value is None:
                continue  # tolerate ";;" and a trailing ";"
            raise ValueError(f"parameter without a name: {param!r}")
        if name in ("unicast", "multicast"):
            spec.cast = name
        elif name == "append":
            spec.append = True
        elif value is None and name in ("destination", "source"):
            continue  # bare "destination": the default, i.e. where the request came from
        elif value is None:
            spec.extra[name] = None
        elif name == "client_port":
            spec.client_port = _pair(value, 65535, name)
        elif name == "server_port":
            spec.server_port = _pair(value, 65535, name)
        elif name == "port":
            spec.port = _pair(value, 65535, name)
        elif name == "interleaved":
            spec.interleaved = _pair(value, 255, name)
        elif name == "ttl":
            spec.ttl = _int(value, 255, name)
        elif name == "ssrc":
            spec.ssrc = _ssrc(value)
        elif name == "mode":
            spec.mode = _mode(value)
        elif name in ("destination", "source"):
            setattr(spec, name, unquote(value) or None)
        else:
            spec.extra[name] = unquote(value)
    return spec


def parse_transport(value: str) -> list[TransportSpec]:
    """All usable alternatives of a ``Transport`` header, in the client's order of preference.

    Raises ``RtspError(461)`` when not one alternative can be read.
    """
    specs: list[TransportSpec] = []
    problems: list[str] = []
    for alternative in split_unquoted(value, ","):
        if not alternative.strip():
            continue
        try:
            specs.append(_parse_alternative(alternative))
        except ValueError as exc:
            problems.append(str(exc))
    if not specs:
        detail = "; ".join(problems[:3]) or "empty header"
        raise RtspError(461, f"no usable Transport alternative in {value[:200]!r}: {detail}")
    return specs


def _format_value(value: str) -> str:
    return value if _PLAIN_VALUE.fullmatch(value) else '"' + value.replace('"', "") + '"'


def format_transport(spec: TransportSpec) -> str:
    """The header value for ``spec`` (e.g. a SETUP reply). ``extra`` parameters are written too."""
    parts = [spec.profile + ("/TCP" if spec.is_tcp else "")]
    if spec.cast:
        parts.append(spec.cast)
    if spec.destination is not None:
        parts.append(f"destination={_format_value(spec.destination)}")
    if spec.source is not None:
        parts.append(f"source={_format_value(spec.source)}")
    if spec.interleaved is not None:
        parts.append(f"interleaved={spec.interleaved[0]}-{spec.interleaved[1]}")
    if spec.append:
        parts.append("append")
    if spec.ttl is not None:
        parts.append(f"ttl={spec.ttl}")
    ports = (("port", spec.port), ("client_port", spec.client_port), ("server_port", spec.server_port))
    for name, pair in ports:
        if pair is not None:
            parts.append(f"{name}={pair[0]}-{pair[1]}")
    if spec.ssrc is not None:
        parts.append(f"ssrc={spec.ssrc:08X}")
    for name, value in spec.extra.items():
        parts.append(name if value is None else f"{name}={_format_value(value)}")
    parts.append(f'mode="{spec.mode}"')
    return ";".join(parts)
