"""GET_PARAMETER / SET_PARAMETER bodies (RFC 2326 10.8, 10.9): ``text/parameters``.

A GET body lists parameter names, one per line; a SET body lists ``name: value`` lines. An
empty body is a keep-alive. Names are case-insensitive.
"""

from __future__ import annotations

from streamd.rtsp.errors import RtspError

MAX_PARAMETERS = 32


def parameter_names(body: bytes) -> list[str]:
    """Names asked for by a GET_PARAMETER body (empty: a keep-alive)."""
    names = [line.strip().rstrip(":").strip().lower() for line in _lines(body)]
    return [n for n in names if n]


def parameter_values(body: bytes) -> dict[str, str]:
    """``name: value`` pairs of a SET_PARAMETER body."""
    values: dict[str, str] = {}
    for line in _lines(body):
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise RtspError(400, f"SET_PARAMETER line without 'name: value': {line[:60]!r}")
        values[name.strip().lower()] = value.strip()
    return values


def format_parameters(values: dict[str, str]) -> bytes:
    return "".join(f"{name}: {value}\r\n" for name, value in values.items()).encode()


def _lines(body: bytes) -> list[str]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RtspError(400, "parameter body is not UTF-8 text") from exc
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > MAX_PARAMETERS:
        raise RtspError(400, f"more than {MAX_PARAMETERS} parameters in one request")
    return lines
