"""Which method is valid in which state of a server session, and where it leads (RFC 2326 appendix A).

One table for players (SETUP, PLAY, PAUSE) and publishers (ANNOUNCE, SETUP mode=record, RECORD,
PAUSE), in the style of h11's ``_state.py``: every rule is data, so a test can walk every method in
every state. Methods that never touch a session's state (OPTIONS, DESCRIBE, ANNOUNCE: the last one
makes a new session) are listed as keeping it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from streamd.rtsp.errors import RtspError


class State(Enum):
    INIT = "init"
    READY = "ready"
    PLAYING = "playing"
    RECORDING = "recording"


class Role(Enum):
    PLAYER = "player"
    PUBLISHER = "publisher"


PUBLIC_METHODS = (
    "OPTIONS",
    "DESCRIBE",
    "SETUP",
    "PLAY",
    "PAUSE",
    "TEARDOWN",
    "GET_PARAMETER",
    "SET_PARAMETER",
    "ANNOUNCE",
    "RECORD",
)


@dataclass(frozen=True)
class Refusal:
    """The answer when a method is not valid in a state."""

    status: int
    reason: str


Outcome = State | Refusal

_INIT, _READY, _PLAYING, _RECORDING = State.INIT, State.READY, State.PLAYING, State.RECORDING


def _build() -> dict[tuple[Role, State, str], Outcome]:
    table: dict[tuple[Role, State, str], Outcome] = {}
    for role in Role:
        for state in State:
            for method in ("OPTIONS", "DESCRIBE", "ANNOUNCE", "GET_PARAMETER", "SET_PARAMETER"):
                table[role, state, method] = state
            table[role, state, "TEARDOWN"] = _INIT  # the session is over (per-track: see the session)
    player, publisher = Role.PLAYER, Role.PUBLISHER
    for state in State:
        table[player, state, "RECORD"] = Refusal(455, "RECORD without ANNOUNCE")
        table[publisher, state, "PLAY"] = Refusal(455, "PLAY on a publisher's session (it RECORDs)")
    table.update(
        {
            (player, _INIT, "SETUP"): _READY,
            (player, _READY, "SETUP"): _READY,
            (player, _PLAYING, "SETUP"): Refusal(455, "SETUP while playing; PAUSE first"),
            (player, _RECORDING, "SETUP"): Refusal(455, "a player's session does not record"),
            (player, _INIT, "PLAY"): Refusal(455, "PLAY before any SETUP"),
            (player, _READY, "PLAY"): _PLAYING,
            (player, _PLAYING, "PLAY"): _PLAYING,  # a re-seek, or a keep-alive
            (player, _RECORDING, "PLAY"): Refusal(455, "a player's session does not record"),
            (player, _INIT, "PAUSE"): Refusal(455, "PAUSE before any SETUP"),
            (player, _READY, "PAUSE"): _READY,  # RFC 7826 13.6: allowed, changes nothing
            (player, _PLAYING, "PAUSE"): _READY,
            (player, _RECORDING, "PAUSE"): Refusal(455, "a player's session does not record"),
            (publisher, _INIT, "SETUP"): _READY,
            (publisher, _READY, "SETUP"): _READY,
            (publisher, _RECORDING, "SETUP"): _RECORDING,
            (publisher, _PLAYING, "SETUP"): Refusal(455, "a publisher's session does not play"),
            (publisher, _INIT, "RECORD"): Refusal(455, "RECORD before SETUP"),
            (publisher, _READY, "RECORD"): _RECORDING,
            (publisher, _RECORDING, "RECORD"): _RECORDING,
            (publisher, _PLAYING, "RECORD"): Refusal(455, "a publisher's session does not play"),
            (publisher, _INIT, "PAUSE"): Refusal(455, "PAUSE before any SETUP"),
            (publisher, _READY, "PAUSE"): _READY,
            (publisher, _RECORDING, "PAUSE"): _READY,  # the path goes offline until RECORD
            (publisher, _PLAYING, "PAUSE"): Refusal(455, "a publisher's session does not play"),
        }
    )
    return table


TRANSITIONS: dict[tuple[Role, State, str], Outcome] = _build()


def outcome(role: Role, state: State, method: str) -> Outcome:
    """Where ``method`` leads from ``state`` (a Refusal when it is not valid there)."""
    if method not in PUBLIC_METHODS:
        return Refusal(501, f"method {method!r} not implemented")
    return TRANSITIONS[role, state, method]


def next_state(role: Role, state: State, method: str) -> State:
    """As :func:`outcome`, raising the refusal as an :class:`RtspError`."""
    result = outcome(role, state, method)
    if isinstance(result, Refusal):
        raise RtspError(result.status, result.reason)
    return result
