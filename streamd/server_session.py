"""A session as the server keeps it: the RTSP state machine plus the I/O objects behind it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from streamd.catalog import Resolved
from streamd.connection import RtspConnection
from streamd.live.hub import LivePath
from streamd.live.multicast import MulticastSink
from streamd.live.reader import LiveReader
from streamd.playback import Binding, Playback
from streamd.rtsp.session import RtspSession


@dataclass
class ServerSession:
    """A session as the server keeps it: protocol state plus the I/O objects behind it."""

    rtsp: RtspSession
    resolved: Resolved
    client_host: str
    label: str
    connection: RtspConnection | None = None  # set for TCP-interleaved sessions
    bindings: dict[int, Binding] = field(default_factory=dict)
    playback: Playback | None = None
    last_activity: float = 0.0
    started: float = field(default_factory=time.monotonic)
    live: LivePath | None = None  # a reader of this live path
    live_reader: LiveReader | None = None
    publishing: LivePath | None = None  # the publisher of this live path
    channels: dict[int, tuple[int, bool]] = field(default_factory=dict)  # publisher TCP: track, is RTCP

    @property
    def id(self) -> str:
        return self.rtsp.id


def session_stats(session: ServerSession) -> str:
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
