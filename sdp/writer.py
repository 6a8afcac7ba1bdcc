"""Serialise a :class:`~sdp.model.SessionDescription` to RFC 8866 text.

Fields are written in the order RFC 8866 section 5 prescribes (some clients parse positionally),
with CRLF line endings. Values are written as they are, but a value holding CR, LF or NUL is
refused: such a value would let whoever chose it (a file name, a path) inject SDP lines.
"""

from __future__ import annotations

from .model import Attribute, Bandwidth, Connection, MediaDescription, SessionDescription

__all__ = ["write"]


def write(sd: SessionDescription) -> str:
    """The SDP text of ``sd``: v o s i u e p c b (t r)* z k a, then per media m i c b k a."""
    out: list[str] = []
    add = _Lines(out)
    o = sd.origin
    add("v", str(sd.version))
    add("o", f"{o.username} {o.session_id} {o.session_version} {o.nettype} {o.addrtype} {o.address}")
    add("s", sd.session_name or " ")
    add.optional("i", sd.information)
    add.optional("u", sd.uri)
    for email in sd.emails:
        add("e", email)
    for phone in sd.phones:
        add("p", phone)
    if sd.connection is not None:
        add("c", _connection(sd.connection))
    _bandwidths(add, sd.bandwidths)
    for timing in sd.timings:
        add("t", f"{timing.start} {timing.stop}")
        for repeat in timing.repeats:
            add("r", repeat)
    add.optional("z", sd.time_zones)
    add.optional("k", sd.key)
    _attributes(add, sd.attributes)
    for media in sd.media:
        _media(add, media)
    return "".join(out)


class _Lines:
    """Appends ``<type>=<value>CRLF`` lines, refusing values that would break the line structure."""

    def __init__(self, out: list[str]) -> None:
        self._out = out

    def __call__(self, kind: str, value: str) -> None:
        if "\r" in value or "\n" in value or "\0" in value:
            raise ValueError(f"SDP {kind}= value may not contain CR, LF or NUL: {value!r}")
        self._out.append(f"{kind}={value}\r\n")

    def optional(self, kind: str, value: str | None) -> None:
        if value is not None:
            self(kind, value)


def _connection(c: Connection) -> str:
    text = f"{c.nettype} {c.addrtype} {c.address}"
    if c.addrtype == "IP6":
        if c.ttl is not None:
            raise ValueError("c= for IP6: multicast has no TTL (RFC 8866 5.7), only an address count")
        return text if c.count is None else f"{text}/{c.count}"
    if c.ttl is None and c.count is not None:
        raise ValueError(f"c= for {c.addrtype}: an address count needs a TTL before it")
    if c.ttl is not None:
        text += f"/{c.ttl}"
        if c.count is not None:
            text += f"/{c.count}"
    return text


def _bandwidths(add: _Lines, bandwidths: list[Bandwidth]) -> None:
    for bw in bandwidths:
        add("b", f"{bw.bwtype}:{bw.value}")


def _attributes(add: _Lines, attributes: list[Attribute]) -> None:
    for attr in attributes:
        add("a", attr.name if attr.value is None else f"{attr.name}:{attr.value}")


def _media(add: _Lines, m: MediaDescription) -> None:
    port = str(m.port) if m.port_count is None else f"{m.port}/{m.port_count}"
    add("m", " ".join([m.media, port, m.proto, *m.formats]))
    add.optional("i", m.title)
    if m.connection is not None:
        add("c", _connection(m.connection))
    _bandwidths(add, m.bandwidths)
    add.optional("k", m.key)
    _attributes(add, m.attributes)
