"""The server side of one RTSP session, free of I/O: state, tracks, and the rules of each request.

The shell hands in requests and plain facts (what the presentation holds, what is enabled, what
the playback reports) and gets back the next state, the checked parameters, the response headers
and the *actions* it must perform (start or pause sending, take a path offline, end the session).
Nothing here reads a clock, opens a socket or awaits.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction

from streamd.rtsp.errors import RtspError
from streamd.rtsp.headers import (
    RtpInfoEntry,
    TransportSpec,
    format_npt,
    format_rtp_info,
    format_session,
    parse_range,
)
from streamd.rtsp.headers.rate import format_rate, parse_rate
from streamd.rtsp.parameters import format_parameters
from streamd.rtsp.transitions import Role, State, next_state
from streamd.rtsp.url import base_url, split_control

SESSION_ID_ALPHABET = string.ascii_letters + string.digits
SESSION_ID_LENGTH = 16
MAX_SCALE = Fraction(64)
MAX_SPEED = Fraction(16)
MAX_CHANNEL = 254  # interleaved channels are one byte; RTCP takes the odd one after RTP


def new_session_id() -> str:
    """An unguessable session id (RFC 2326 12.37 asks for one that is hard to guess)."""
    return "".join(secrets.choice(SESSION_ID_ALPHABET) for _ in range(SESSION_ID_LENGTH))


# --- actions: what the shell must do after a request ----------------------------------------------


@dataclass(frozen=True)
class StartPlayback:
    """Prepare and start (or re-seek) sending with these parameters."""

    params: PlayParams


@dataclass(frozen=True)
class PausePlayback:
    """Stop sending, keeping the position (a later PLAY resumes)."""


@dataclass(frozen=True)
class GoOnline:
    """A publisher's RECORD: its path is live from now on."""


@dataclass(frozen=True)
class GoOffline:
    """A publisher's PAUSE: its path goes offline, readers get BYE, until the next RECORD."""


@dataclass(frozen=True)
class RemoveTrack:
    """A per-track TEARDOWN: stop sending this track; the session goes on."""

    index: int


@dataclass(frozen=True)
class EndSession:
    """The session is over (TEARDOWN): wind it down, sending RTCP BYE."""

    reason: str


Action = StartPlayback | PausePlayback | GoOnline | GoOffline | RemoveTrack | EndSession


# --- the session --------------------------------------------------------------------------------


@dataclass
class TrackSetup:
    """One track of the session and the transport the client and server agreed on."""

    track_index: int
    control: str  # the control URL suffix, e.g. "trackID=1"
    transport: TransportSpec  # as replied to the client (server_port / interleaved filled in)


@dataclass
class RtspServerSession:
    """Which tracks of which path a client set up, in which role, and where it stands."""

    path: str
    timeout: int
    role: Role = Role.PLAYER
    id: str = field(default_factory=new_session_id)
    state: State = State.INIT
    tracks: dict[int, TrackSetup] = field(default_factory=dict)
    multicast: bool = False  # its tracks come from a multicast group

    @property
    def lower_transport(self) -> str | None:
        for track in self.tracks.values():
            return track.transport.lower_transport
        return None

    @property
    def session_header(self) -> str:
        """``Session: <id>;timeout=<s>`` (clients pace their keep-alives from it)."""
        return format_session(self.id, self.timeout)

    def check(self, method: str) -> State:
        """The state ``method`` would lead to; RtspError (455, 501) when it is not valid now."""
        return next_state(self.role, self.state, method)

    def setup(self, track: TrackSetup) -> None:
        """Add a track (or re-negotiate one already set up) after the transport was chosen.

        All tracks of a session use the same lower transport: the server sends them from one
        pacing loop, and mixing UDP and TCP gives nothing but corner cases.
        """
        state = self.check("SETUP")
        lower = track.transport.lower_transport
        for other in self.tracks.values():
            if other.track_index != track.track_index and other.transport.lower_transport != lower:
                raise RtspError(461, "all tracks of a session must use the same transport (UDP or TCP)")
        self.tracks[track.track_index] = track
        self.state = state

    def play(self, params: PlayParams, current: tuple[Fraction, Fraction] | None) -> list[Action]:
        """PLAY with checked parameters; ``current`` is (scale, speed) of a running playback.

        A repeated PLAY without Range and with the same rates changes nothing (clients use it
        as a keep-alive): no action then.
        """
        if not self.tracks:
            raise RtspError(455, "PLAY before any SETUP")
        was_playing = self.state is State.PLAYING
        self.state = self.check("PLAY")
        unchanged = current is not None and (params.scale, params.speed) == current
        if was_playing and params.start is None and params.end is None and unchanged:
            return []
        return [StartPlayback(params)]

    def play_failed(self) -> None:
        """The shell could not start sending: back to READY."""
        if self.state is State.PLAYING:
            self.state = State.READY

    def pause(self) -> list[Action]:
        state = self.check("PAUSE")
        was_active = self.state in (State.PLAYING, State.RECORDING)
        self.state = state
        if not was_active:
            return []
        return [GoOffline()] if self.role is Role.PUBLISHER else [PausePlayback()]

    def record(self) -> list[Action]:
        self.state = self.check("RECORD")
        return [GoOnline()]

    def teardown(self, track_index: int | None = None) -> list[Action]:
        """Remove one track (per-track TEARDOWN) or all (the session ends)."""
        self.check("TEARDOWN")
        if track_index is None or set(self.tracks) <= {track_index}:
            self.tracks.clear()
            self.state = State.INIT
            return [EndSession("TEARDOWN")]
        if track_index not in self.tracks:
            raise RtspError(455, f"track {track_index} is not set up in this session")
        del self.tracks[track_index]
        return [RemoveTrack(track_index)]


# --- transport choice and interleaved channels ---------------------------------------------------


@dataclass(frozen=True)
class TransportFacts:
    """What the server can offer now, for :func:`choose_transport`."""

    tcp: bool = True
    udp: bool = True
    multicast_refusal: str | None = "multicast is not offered"  # None: a multicast SETUP may proceed
    secure: bool = False  # the request came over TLS (RTSPS): SRTP keys may be given
    encryption: str = "no"  # the path's policy: "no", "optional" or "strict"
    keys_offered: bool = False  # this connection's DESCRIBE gave SDES/MIKEY keys for the path


SRTP_PROFILES = ("RTP/SAVP", "RTP/SAVPF")


def uses_srtp(offer: TransportSpec, facts: TransportFacts) -> bool:
    """Whether the media of a chosen offer travels as SRTP.

    ``RTP/SAVP(F)`` says so. ffmpeg reads ``a=crypto`` from the SDP but always asks ``RTP/AVP``,
    so an SDP that offered keys on this (secure) connection binds the session to SRTP too; a
    client that wants plain RTP on an "optional" path asks over plain RTSP, whose SDP has no keys.
    """
    return offer.profile.upper() in SRTP_PROFILES or (facts.secure and facts.keys_offered)


def profile_refusal(offer: TransportSpec, facts: TransportFacts) -> str | None:
    """Why the offer's profile cannot be honoured under the encryption policy, or None."""
    profile = offer.profile.upper()
    if profile in SRTP_PROFILES:
        if not facts.secure:
            return f"{profile} needs RTSPS: SRTP keys never travel over plain RTSP"
        if facts.encryption == "no":
            return f"{profile} is not offered on this path (encryption = no)"
        return None
    if profile != "RTP/AVP":
        return f"profile {offer.profile} not supported"
    if facts.encryption == "strict" and not offer.is_tcp and not uses_srtp(offer, facts):
        return "plain RTP over UDP is refused on this path (encryption = strict): ask RTP/SAVP"
    return None


def choose_transport(
    offers: Iterable[TransportSpec], session: RtspServerSession | None, facts: TransportFacts
) -> TransportSpec:
    """The first offer a player's SETUP can be honoured with; 461 with every reason otherwise.

    461 tells clients to retry another way (UDP -> TCP), which is what ffmpeg and VLC do.
    """
    fixed = session.lower_transport if session is not None else None
    multicast = session is not None and session.multicast
    reasons = []
    for offer in offers:
        refused = profile_refusal(offer, facts)
        if refused is not None:
            reasons.append(refused)
            continue
        if offer.mode.upper() != "PLAY":
            reasons.append(f"mode {offer.mode} not supported")
            continue
        if fixed is not None and offer.lower_transport != fixed:
            reasons.append(f"session already uses {fixed}")
            continue
        if fixed is not None and multicast != (offer.cast == "multicast"):
            reasons.append(f"session already uses {'multi' if multicast else 'uni'}cast")
            continue
        if offer.lower_transport == "TCP":
            if facts.tcp:
                return offer
            reasons.append("TCP is disabled")
        elif offer.cast == "multicast":
            refusal = "UDP is disabled" if not facts.udp else facts.multicast_refusal
            if refusal is None:
                return offer
            reasons.append(refusal)
        elif not facts.udp:
            reasons.append("UDP is disabled")
        elif offer.client_port is None:
            reasons.append("UDP without client_port")
        else:
            return offer
    raise RtspError(461, "; ".join(reasons) or "no usable transport")


def choose_record_transport(
    offers: Iterable[TransportSpec], *, udp: bool, facts: TransportFacts | None = None
) -> TransportSpec:
    """The first ``mode=record`` offer of a publisher's SETUP (461 when there is none, or UDP can't,
    or the encryption policy refuses its profile)."""
    records = [o for o in offers if o.mode.upper() == "RECORD"]
    if not records:
        raise RtspError(461, "a publisher's SETUP must say mode=record")
    offer = records[0]
    refused = profile_refusal(offer, facts or TransportFacts())
    if refused is not None:
        raise RtspError(461, refused)
    if offer.lower_transport != "TCP" and (not udp or offer.client_port is None):
        raise RtspError(461, "UDP publishing needs client_port (and UDP enabled)")
    return offer


def check_destination(offer: TransportSpec, client_host: str) -> None:
    """Unicast goes to the client only: a ``destination`` elsewhere would make us a traffic cannon."""
    if offer.destination and offer.destination != client_host:
        raise RtspError(403, f"destination {offer.destination} differs from the client's address; refused")


def free_channels(used: set[int]) -> tuple[int, int]:
    """The lowest even/odd pair of interleaved channels not in ``used`` (461 when none is left)."""
    channel = 0
    while channel in used or channel + 1 in used:
        channel += 2
    if channel > MAX_CHANNEL:
        raise RtspError(461, "no free interleaved channels on this connection")
    return channel, channel + 1


def pick_channels(wanted: tuple[int, int] | None, used: set[int]) -> tuple[int, int]:
    """The pair the client asked for if it is free, else the lowest free pair."""
    if wanted is not None and wanted[0] not in used and wanted[1] not in used:
        return wanted
    return free_channels(used)


# --- PLAY: Range, Scale, Speed; Range and RTP-Info in the response -------------------------------


@dataclass(frozen=True)
class PlayParams:
    """What a PLAY asks for, checked. ``start``/``end`` are npt seconds; None start resumes."""

    start: Fraction | None = None
    end: Fraction | None = None
    scale: Fraction = Fraction(1)
    speed: Fraction = Fraction(1)


@dataclass(frozen=True)
class PlayFacts:
    """What the PLAY rules need to know about the presentation and the session's tracks."""

    duration: Fraction | None  # None: live or unknown
    has_video: bool
    whole_mpegts: bool = False  # a whole MPEG-TS sent as one track: cannot be time-scaled


def play_params(headers: Mapping[str, str], facts: PlayFacts) -> PlayParams:
    """Range, Scale and Speed of a PLAY checked against the presentation (457/456 otherwise)."""
    duration = facts.duration
    start = end = None
    if "Range" in headers:
        requested = parse_range(headers["Range"])
        if not requested.start_is_now and requested.start is not None:
            start = requested.start
            if start < 0 or (duration is not None and start > duration):
                raise RtspError(457, f"range start {format_npt(start)} outside 0-{format_npt(duration or 0)}")
        end = requested.end
        if end is not None:
            if start is not None and end <= start:
                raise RtspError(457, "range end not after its start")
            if duration is not None and end >= duration:
                end = None  # to the end anyway
    scale = Fraction(1)
    if "Scale" in headers:
        scale = parse_rate(headers["Scale"], "Scale")
        if scale <= 0:
            raise RtspError(456, f"Scale {format_rate(scale)}: reverse or still playback is not supported")
        if scale != 1 and facts.whole_mpegts:
            raise RtspError(456, "Scale other than 1 is not offered for a whole MPEG-TS")
        if scale != 1 and not facts.has_video:
            raise RtspError(456, "Scale other than 1 needs a video track (audio is not time-scaled)")
        scale = min(scale, MAX_SCALE)
    speed = Fraction(1)
    if "Speed" in headers:
        speed = parse_rate(headers["Speed"], "Speed")
        if speed <= 0:
            raise RtspError(456, f"Speed {format_rate(speed)} must be positive")
        speed = min(speed, MAX_SPEED)
    return PlayParams(start, end, scale, speed)


def range_header(start: Fraction, end: Fraction | None, duration: Fraction | None) -> str:
    """``npt=<start>-<end>``; the end is the presentation's when the PLAY named none."""
    if end is None:
        end = duration
    return f"npt={format_npt(start)}-{format_npt(end) if end else ''}"


def presentation_url(uri: str) -> str:
    """The aggregate URL of a request URI that may name a track (RTP-Info URLs hang off it)."""
    base = base_url(uri).rstrip("/")
    _, control = split_control(base.split("://", 1)[-1])
    if control is not None:
        base = base[: -len(control) - 1]
    return base


def rtp_info_header(uri: str, tracks: Iterable[tuple[str, int, int | None]]) -> str:
    """RTP-Info for (control, first seq, its rtptime) of every playing track."""
    base = presentation_url(uri)
    return format_rtp_info(
        RtpInfoEntry(f"{base}/{control}", seq, rtptime) for control, seq, rtptime in tracks
    )


def rate_headers(headers: Mapping[str, str], params: PlayParams) -> dict[str, str]:
    """Scale and Speed echoed when asked for or not 1."""
    reply = {}
    if "Scale" in headers or params.scale != 1:
        reply["Scale"] = format_rate(params.scale)
    if "Speed" in headers or params.speed != 1:
        reply["Speed"] = format_rate(params.speed)
    return reply


# --- GET_PARAMETER / SET_PARAMETER ----------------------------------------------------------------


def get_parameters(names: list[str], known: Mapping[str, str]) -> bytes | None:
    """The body answering a GET_PARAMETER of ``names`` (None for a keep-alive); 451 for unknown ones."""
    if not names:
        return None
    unknown = [n for n in names if n not in known]
    if unknown:
        raise RtspError(451, f"parameters not understood: {', '.join(unknown)[:200]}")
    return format_parameters({n: known[n] for n in names})


def set_parameters(values: Mapping[str, str], known: Mapping[str, str]) -> None:
    """Every parameter is read-only (PLAY changes position and rates): 451 unknown, 458 known."""
    unknown = [n for n in values if n not in known]
    if unknown:
        raise RtspError(451, f"parameters not understood: {', '.join(unknown)[:200]}")
    if values:
        raise RtspError(458, f"read-only parameters: {', '.join(values)[:200]} (use PLAY to change them)")


def session_parameters(
    session: RtspServerSession,
    position: Fraction,
    duration: Fraction | None,
    scale: Fraction,
    speed: Fraction,
) -> dict[str, str]:
    """What GET_PARAMETER reports within a session."""
    return {
        "position": format_npt(position),
        "duration": format_npt(duration) if duration is not None else "live",
        "scale": format_rate(scale),
        "speed": format_rate(speed),
        "state": session.state.value,
    }
