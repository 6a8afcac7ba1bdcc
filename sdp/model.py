"""RFC 8866 session descriptions as plain, mutable dataclasses.

The model mirrors the text closely (one field per line type, attributes kept as raw strings in
order) so that a description written and parsed again compares equal, and so that attributes this
package knows nothing about survive a round trip untouched. Interpretation of attribute values is
left to helpers (:mod:`sdp.fmtp`) and to the payload-format code that owns them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .fmtp import FmtpParams, RtpMap, parse_fmtp, parse_rtpmap

__all__ = [
    "Attribute",
    "Bandwidth",
    "Connection",
    "MediaDescription",
    "Origin",
    "SessionDescription",
    "Timing",
]


@dataclass
class Origin:
    """``o=``: who made the description and which version of it this is.

    ``session_id`` and ``session_version`` are kept as text: they are digit strings that may
    exceed 64 bits (some servers put microsecond timestamps there) and must be echoed unchanged.
    """

    username: str = "-"
    session_id: str = "0"
    session_version: str = "0"
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "0.0.0.0"


@dataclass
class Connection:
    """``c=``: where media is sent. ``ttl`` and ``count`` appear only for multicast (RFC 8866 5.7).

    For IP4 the syntax is ``address/ttl/count``; for IP6 a single suffix is the address count.
    """

    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "0.0.0.0"
    ttl: int | None = None
    count: int | None = None


@dataclass
class Bandwidth:
    """``b=<bwtype>:<value>``, e.g. ``AS`` in kilobits per second."""

    bwtype: str
    value: int


@dataclass
class Timing:
    """``t=`` plus its ``r=`` repeat lines, which are kept raw because nobody streams by them."""

    start: int = 0
    stop: int = 0
    repeats: list[str] = field(default_factory=list)


@dataclass
class Attribute:
    """``a=<name>[:<value>]``; ``value`` is None for a property attribute such as ``a=recvonly``."""

    name: str
    value: str | None = None


class _AttributeList:
    """Lookup helpers shared by session and media level, which both own an ``attributes`` list."""

    attributes: list[Attribute]

    def get(self, name: str) -> str | None:
        """The value of the first attribute called ``name`` (None if absent or a property)."""
        for attr in self.attributes:
            if attr.name == name:
                return attr.value
        return None

    def get_all(self, name: str) -> list[str | None]:
        return [attr.value for attr in self.attributes if attr.name == name]

    def has(self, name: str) -> bool:
        return any(attr.name == name for attr in self.attributes)

    def add(self, name: str, value: str | None = None) -> None:
        self.attributes.append(Attribute(name, value))

    def set(self, name: str, value: str | None) -> None:
        """Replace every ``name`` attribute by one, where the first of them was (else appended)."""
        new = Attribute(name, value)
        kept: list[Attribute] = []
        placed = False
        for attr in self.attributes:
            if attr.name != name:
                kept.append(attr)
            elif not placed:
                kept.append(new)
                placed = True
        if not placed:
            kept.append(new)
        self.attributes[:] = kept

    def remove(self, name: str) -> int:
        """Drop every ``name`` attribute; return how many there were."""
        before = len(self.attributes)
        self.attributes[:] = [attr for attr in self.attributes if attr.name != name]
        return before - len(self.attributes)

    @property
    def control(self) -> str | None:
        """``a=control`` (RFC 2326 C.1.1): the URL, relative or absolute, that addresses this level."""
        return self.get("control")

    @control.setter
    def control(self, value: str | None) -> None:
        if value is None:
            self.remove("control")
        else:
            self.set("control", value)


@dataclass
class MediaDescription(_AttributeList):
    """One ``m=`` section. ``formats`` are RTP payload types (as text) for RTP profiles."""

    media: str
    port: int
    proto: str
    formats: list[str] = field(default_factory=list)
    port_count: int | None = None
    title: str | None = None
    connection: Connection | None = None
    bandwidths: list[Bandwidth] = field(default_factory=list)
    key: str | None = None
    attributes: list[Attribute] = field(default_factory=list)

    def rtpmap(self, pt: int | str) -> RtpMap | None:
        """The rtpmap for payload type ``pt``; None if there is none or it is malformed.

        None for malformed ones too, because callers must handle "no usable rtpmap" anyway
        (static payload types have none) and a peer's typo should not surface as a crash.
        """
        wanted = str(pt)
        for value in self.get_all("rtpmap"):
            if value is None or value.split(None, 1)[:1] != [wanted]:
                continue
            try:
                return parse_rtpmap(value)
            except ValueError:
                return None
        return None

    def fmtp(self, pt: int | str) -> FmtpParams:
        """The format parameters for ``pt`` (empty when there is no ``a=fmtp`` for it)."""
        wanted = str(pt)
        for value in self.get_all("fmtp"):
            if value is None or not value.strip():
                continue
            fmt, params = parse_fmtp(value)
            if fmt == wanted:
                return params
        return FmtpParams()


@dataclass
class SessionDescription(_AttributeList):
    """A whole description; ``str()`` gives its RFC 8866 text with CRLF line endings.

    ``session_name`` defaults to a single space, RFC 8866's spelling of "no name" that every
    client accepts. ``time_zones`` is the raw ``z=`` value. ``timings`` is empty only when the
    parsed text had no ``t=`` line.
    """

    version: int = 0
    origin: Origin = field(default_factory=Origin)
    session_name: str = " "
    information: str | None = None
    uri: str | None = None
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    connection: Connection | None = None
    bandwidths: list[Bandwidth] = field(default_factory=list)
    timings: list[Timing] = field(default_factory=lambda: [Timing()])
    time_zones: str | None = None
    key: str | None = None
    attributes: list[Attribute] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)
