"""Sessions as the shell keeps them: the sans-I/O protocol state plus the I/O objects of each role.

A :class:`PlayerSession` sends a presentation (a file, or a live path's fan-out) to its client; a
:class:`PublisherSession` feeds a live path. Both carry the protocol state
(:class:`~streamd.rtsp.server_session.RtspServerSession`) and who owns them: the RTSP connection
that made them, the client address (a UDP session may come back on a new connection) and the
user they were made for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from streamd.catalog import Resolved
from streamd.live.hub import LivePath
from streamd.live.multicast import MulticastSink
from streamd.live.reader import LiveReader
from streamd.playback import Binding, Playback
from streamd.rtsp.server_session import RtspServerSession
from streamd.srtp.session import SessionSrtp
from streamd.transport.interleaved import FrameWriter


class Client(FrameWriter, Protocol):
    """An RTSP connection, as sessions and handlers see it."""

    peer: tuple[str, int]
    local: tuple[str, int]
    label: str
    sessions: set[str]  # ids of sessions set up on this connection
    secure: bool  # it arrived over TLS (RTSPS, or a tunnel over HTTPS)


@dataclass(kw_only=True)
class ServerSession:
    """What every session has: protocol state, its owner, and its last sign of life."""

    rtsp: RtspServerSession
    resolved: Resolved
    client_host: str
    label: str
    owner: Client | None = None  # the RTSP connection that made it (or took it over, same client)
    user: str | None = None  # the user it was made for (another connection must log in as it)
    connection: Client | None = None  # set when its packets travel on that connection (interleaved)
    srtp: SessionSrtp | None = None  # its media travels as SRTP (RTP/SAVP): keys and SRTCP checks
    last_activity: float = 0.0
    started: float = field(default_factory=time.monotonic)

    @property
    def id(self) -> str:
        return self.rtsp.id

    @property
    def path(self) -> str:
        return self.rtsp.path


@dataclass(kw_only=True)
class PlayerSession(ServerSession):
    """A reader: a file's playback, or a reader of a live path."""

    bindings: dict[int, Binding] = field(default_factory=dict)
    playback: Playback | None = None
    live: LivePath | None = None  # a reader of this live path
    live_reader: LiveReader | None = None


@dataclass(kw_only=True)
class PublisherSession(ServerSession):
    """A publisher (ANNOUNCE, SETUP mode=record, RECORD) of a live path."""

    publishing: LivePath


def session_stats(session: ServerSession) -> str:
    if isinstance(session, PublisherSession):
        return f"{session.publishing.units_in} units in"
    assert isinstance(session, PlayerSession)
    parts = []
    for binding in session.bindings.values():
        s = binding.stream
        r = s.reception
        if isinstance(binding.sink, MulticastSink):  # counters belong to the group, logged there
            parts.append(f"{binding.streamable.control}: from the path's multicast group")
            continue
        text = f"{binding.streamable.control}: {s.packet_count} packets, {s.octet_count} bytes"
        if r.reports:
            text += (
                f", loss {r.fraction_lost:.1%} ({r.cumulative_lost} total), jitter {r.jitter_ms:.1f} ms"
                + (f", rtt {r.rtt_ms:.1f} ms" if r.rtt_ms is not None else "")
            )
        parts.append(text)
    return "; ".join(parts) or "no tracks"
