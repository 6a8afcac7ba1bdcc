"""The RTSP session state machine (RFC 2326 appendix A), free of I/O.

A session aggregates the tracks one client set up for one presentation. Methods check
that the request is valid in the current state (455 otherwise) and move the state; the
server shell performs the I/O the transitions call for (start or stop sending).
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from enum import Enum

from streamd.rtsp.errors import RtspError
from streamd.rtsp.headers.transport import TransportSpec

SESSION_ID_ALPHABET = string.ascii_letters + string.digits
SESSION_ID_LENGTH = 16


class State(Enum):
    INIT = "init"
    READY = "ready"
    PLAYING = "playing"


def new_session_id() -> str:
    """An unguessable session id (RFC 2326 12.37 asks for one that is hard to guess)."""
    return "".join(secrets.choice(SESSION_ID_ALPHABET) for _ in range(SESSION_ID_LENGTH))


@dataclass
class TrackSetup:
    """One track of the session and the transport the client and server agreed on."""

    track_index: int
    control: str  # the control URL suffix, e.g. "trackID=1"
    transport: TransportSpec  # as replied to the client (server_port / interleaved filled in)


@dataclass
class RtspSession:
    """Which tracks of which presentation a client set up, and where it stands."""

    path: str
    timeout: int
    id: str = field(default_factory=new_session_id)
    state: State = State.INIT
    tracks: dict[int, TrackSetup] = field(default_factory=dict)

    def setup(self, track: TrackSetup, *, lower_transport: str) -> None:
        """Add a track (or re-negotiate one already set up, while not playing).

        All tracks of a session must use the same lower transport: the server sends them
        from one pacing loop, and mixing UDP and TCP gives nothing but corner cases.
        """
        if self.state is State.PLAYING and track.track_index not in self.tracks:
            raise RtspError(455, "cannot add a track while playing; PAUSE first")
        for other in self.tracks.values():
            if other.track_index != track.track_index and other.transport.lower_transport != lower_transport:
                raise RtspError(461, "all tracks of a session must use the same transport (UDP or TCP)")
        self.tracks[track.track_index] = track
        if self.state is State.INIT:
            self.state = State.READY

    def play(self) -> None:
        if self.state is State.INIT or not self.tracks:
            raise RtspError(455, "PLAY before any SETUP")
        self.state = State.PLAYING

    def pause(self) -> bool:
        """Returns True when playback was running and must be stopped.

        PAUSE in READY is answered 200 and changes nothing (RFC 7826 13.6 allows it; clients
        send it when they pause before the first frame arrives).
        """
        if self.state is State.INIT:
            raise RtspError(455, "PAUSE before any SETUP")
        was_playing = self.state is State.PLAYING
        self.state = State.READY
        return was_playing

    def teardown(self, track_index: int | None = None) -> bool:
        """Remove one track (per-track TEARDOWN) or all. Returns True when the session is over."""
        if track_index is None or set(self.tracks) == {track_index}:
            self.tracks.clear()
            self.state = State.INIT
            return True
        if track_index not in self.tracks:
            raise RtspError(455, f"track {track_index} is not set up in this session")
        del self.tracks[track_index]
        return False

    @property
    def lower_transport(self) -> str | None:
        for track in self.tracks.values():
            return track.transport.lower_transport
        return None
