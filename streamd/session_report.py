"""Sessions as plain data, for the JSON API and the metrics: who, what, how, how well.

Client details (session id, address) are for privileged readers only: a session id is all it takes
to act on a session from its own address, and addresses are nobody else's business.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from streamd.server_session import PlayerSession, ServerSession


def session_row(session: ServerSession, now: float, *, private: bool) -> dict[str, object]:
    bindings = session.bindings if isinstance(session, PlayerSession) else {}
    playback = session.playback if isinstance(session, PlayerSession) else None
    row: dict[str, object] = {}
    if private:
        row["id"] = session.id
    row["path"] = session.rtsp.path
    if private:
        row["client"] = session.client_host
    row.update(
        {
            "transport": "UDP multicast" if session.rtsp.multicast else session.rtsp.lower_transport,
            "state": session.rtsp.state.value,
            "age_seconds": round(now - session.started, 3),
            "position": float(playback.npt) if playback else 0.0,
            "tracks": [
                {
                    "control": b.streamable.control,
                    "codec": b.streamable.track.codec,
                    "ssrc": b.stream.ssrc,
                    "sink": b.sink.description,
                    "packets_sent": b.stream.packet_count,
                    "bytes_sent": b.stream.octet_count,
                    "rtcp": getattr(b.sink, "reception", b.stream.reception).as_dict(),
                }
                for b in bindings.values()
            ],
        }
    )
    return row


def snapshot(
    sessions: Iterable[ServerSession],
    now: float,
    *,
    private: bool = True,
    offset: int = 0,
    limit: int | None = None,
) -> list[dict[str, object]]:
    """Rows ``offset`` to ``offset + limit`` (all without a limit); only those rows are computed."""
    stop = None if limit is None else offset + limit
    return [session_row(s, now, private=private) for s in itertools.islice(sessions, offset, stop)]
