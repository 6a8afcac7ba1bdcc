"""The sans-I/O server session: every method in every state, for players and publishers, plus the
transport, channel, PLAY and parameter rules. No sockets, no clock: milliseconds."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import pytest

from streamd.rtsp.errors import RtspError
from streamd.rtsp.headers import parse_rtp_info, parse_transport
from streamd.rtsp.headers.transport import TransportSpec
from streamd.rtsp.server_session import (
    EndSession,
    GoOffline,
    GoOnline,
    PausePlayback,
    PlayFacts,
    PlayParams,
    RemoveTrack,
    RtspServerSession,
    StartPlayback,
    TrackSetup,
    TransportFacts,
    check_destination,
    choose_record_transport,
    choose_transport,
    free_channels,
    get_parameters,
    new_session_id,
    pick_channels,
    play_params,
    range_header,
    rtp_info_header,
    set_parameters,
    uses_srtp,
)
from streamd.rtsp.transitions import PUBLIC_METHODS, TRANSITIONS, Refusal, Role, State, outcome

N, R, P, C = State.INIT, State.READY, State.PLAYING, State.RECORDING
METHODS = (*PUBLIC_METHODS, "FLY")

# The oracle, written out by hand: method -> (INIT, READY, PLAYING, RECORDING), each the next state
# or the refusal status. Player sessions never reach RECORDING, publisher sessions never PLAYING;
# the table still answers for them (455).
PLAYER = {
    "OPTIONS": (N, R, P, C),
    "DESCRIBE": (N, R, P, C),
    "ANNOUNCE": (N, R, P, C),
    "GET_PARAMETER": (N, R, P, C),
    "SET_PARAMETER": (N, R, P, C),
    "SETUP": (R, R, 455, 455),
    "PLAY": (455, P, P, 455),
    "PAUSE": (455, R, R, 455),
    "TEARDOWN": (N, N, N, N),
    "RECORD": (455, 455, 455, 455),
    "FLY": (501, 501, 501, 501),
}
PUBLISHER = {
    **PLAYER,
    "SETUP": (R, R, 455, C),
    "PLAY": (455, 455, 455, 455),
    "PAUSE": (455, R, 455, R),
    "RECORD": (455, C, 455, C),
}
EXPECTED = {Role.PLAYER: PLAYER, Role.PUBLISHER: PUBLISHER}
CASES = [(role, state, method) for role in Role for state in State for method in METHODS]


def udp(index: int) -> TrackSetup:
    spec = TransportSpec(profile="RTP/AVP", lower_transport="UDP", client_port=(5000, 5001))
    return TrackSetup(index, f"trackID={index}", spec)


def tcp(index: int) -> TrackSetup:
    return TrackSetup(index, f"trackID={index}", TransportSpec(profile="RTP/AVP", lower_transport="TCP"))


def session_in(role: Role, state: State) -> RtspServerSession:
    session = RtspServerSession("live/x", 60, role=role, state=state)
    if state is not State.INIT:
        session.tracks[0] = udp(0)
    return session


def drive(session: RtspServerSession, method: str) -> list[object]:
    """One request through the session's own method for it (the state-only ones through check)."""
    if method == "SETUP":
        session.setup(udp(1))
        return []
    if method == "PLAY":
        return list(session.play(PlayParams(), None))
    if method == "PAUSE":
        return list(session.pause())
    if method == "RECORD":
        return list(session.record())
    if method == "TEARDOWN":
        return list(session.teardown())
    session.state = session.check(method)
    return []


@pytest.mark.parametrize(("role", "state", "method"), CASES, ids=lambda v: getattr(v, "name", v))
def test_every_method_in_every_state(role: Role, state: State, method: str) -> None:
    expected = EXPECTED[role][method][list(State).index(state)]
    session = session_in(role, state)
    if isinstance(expected, int):
        with pytest.raises(RtspError) as err:
            drive(session, method)
        assert err.value.status == expected and err.value.reason
        assert session.state is state  # a refusal changes nothing
    else:
        drive(session, method)
        assert session.state is expected


def test_the_table_is_complete() -> None:
    assert {(r, s, m) for r in Role for s in State for m in PUBLIC_METHODS} == set(TRANSITIONS)
    assert outcome(Role.PLAYER, State.READY, "FLY") == Refusal(501, "method 'FLY' not implemented")


def test_actions_of_each_transition() -> None:
    player = session_in(Role.PLAYER, State.READY)
    assert player.play(PlayParams(), None) == [StartPlayback(PlayParams())]
    # a repeated PLAY without Range at the same rates is a keep-alive; with a Range, a re-seek
    assert player.play(PlayParams(), (Fraction(1), Fraction(1))) == []
    seek = PlayParams(start=Fraction(3))
    assert player.play(seek, (Fraction(1), Fraction(1))) == [StartPlayback(seek)]
    faster = PlayParams(scale=Fraction(2))
    assert player.play(faster, (Fraction(1), Fraction(1))) == [StartPlayback(faster)]
    assert player.pause() == [PausePlayback()]
    assert player.pause() == []  # PAUSE in READY: nothing to stop
    player.play(PlayParams(), None)
    player.play_failed()
    assert player.state is State.READY
    publisher = session_in(Role.PUBLISHER, State.READY)
    assert publisher.record() == [GoOnline()] and publisher.state is State.RECORDING
    assert publisher.pause() == [GoOffline()] and publisher.state is State.READY
    assert publisher.teardown() == [EndSession("TEARDOWN")]


def test_per_track_teardown() -> None:
    s = RtspServerSession("test", 60)
    s.setup(udp(0))
    s.setup(udp(1))
    assert s.teardown(1) == [RemoveTrack(1)] and set(s.tracks) == {0}
    with pytest.raises(RtspError) as err:
        s.teardown(5)
    assert err.value.status == 455
    assert s.teardown(0) == [EndSession("TEARDOWN")] and s.state is State.INIT


def test_all_tracks_of_a_session_share_a_lower_transport() -> None:
    s = RtspServerSession("test", 60)
    s.setup(udp(0))
    with pytest.raises(RtspError) as err:
        s.setup(tcp(1))
    assert err.value.status == 461 and s.lower_transport == "UDP"
    s.setup(udp(0))  # re-negotiating the same track is fine


def test_ids_are_unguessable_and_headers_carry_the_timeout() -> None:
    ids = {new_session_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 16 and i.isalnum() for i in ids)
    s = RtspServerSession("test", 42)
    assert s.session_header == f"{s.id};timeout=42"


# --- transport choice ---------------------------------------------------------------------------

ALL = TransportFacts(tcp=True, udp=True, multicast_refusal=None)


def offers(header: str) -> list[TransportSpec]:
    return parse_transport(header)


def refusal(header: str, facts: TransportFacts = ALL, session: RtspServerSession | None = None) -> str:
    with pytest.raises(RtspError) as err:
        choose_transport(offers(header), session, facts)
    assert err.value.status == 461
    return err.value.reason


def test_the_first_offer_that_can_be_honoured_wins() -> None:
    chosen = choose_transport(offers("RTP/SAVP;unicast,RTP/AVP;unicast;client_port=6000-6001"), None, ALL)
    assert chosen.client_port == (6000, 6001)
    assert choose_transport(offers("RTP/AVP/TCP;interleaved=4-5"), None, ALL).interleaved == (4, 5)
    assert choose_transport(offers("RTP/AVP;multicast"), None, ALL).cast == "multicast"


def test_461_says_why_every_offer_failed() -> None:
    reason = refusal("RTP/XAVP;unicast,RTP/AVP;unicast;mode=record,RTP/AVP;unicast")
    assert reason == "profile RTP/XAVP not supported; mode RECORD not supported; UDP without client_port"
    assert refusal("RTP/AVP/TCP", TransportFacts(tcp=False)) == "TCP is disabled"
    assert refusal("RTP/AVP;unicast;client_port=1-2", TransportFacts(udp=False)) == "UDP is disabled"
    assert refusal("RTP/AVP;multicast", TransportFacts(udp=False)) == "UDP is disabled"
    assert refusal("RTP/AVP;multicast", TransportFacts(multicast_refusal="no group")) == "no group"


SECURE = replace(ALL, secure=True, encryption="optional")
STRICT = replace(SECURE, encryption="strict")
UDP_SAVP = "RTP/SAVP;unicast;client_port=6000-6001"
UDP_AVP = "RTP/AVP;unicast;client_port=6000-6001"


@pytest.mark.parametrize(
    ("header", "facts", "expected"),
    [
        # SRTP keys only inside RTSPS, and only where the path's policy offers encryption
        (UDP_SAVP, ALL, "RTP/SAVP needs RTSPS: SRTP keys never travel over plain RTSP"),
        ("RTP/SAVPF;unicast;client_port=6000-6001", ALL, "RTP/SAVPF needs RTSPS"),
        (UDP_SAVP, replace(ALL, encryption="strict"), "RTP/SAVP needs RTSPS"),
        (UDP_SAVP, replace(SECURE, encryption="no"), "not offered on this path (encryption = no)"),
        (UDP_SAVP, SECURE, "srtp"),
        ("RTP/SAVPF;unicast;client_port=6000-6001", SECURE, "srtp"),
        ("RTP/SAVP/TCP;interleaved=0-1", SECURE, "srtp"),
        (UDP_SAVP, STRICT, "srtp"),
        # plain RTP: as before, except over UDP on a strict path
        (UDP_AVP, SECURE, "plain"),
        (UDP_AVP, replace(ALL, encryption="optional"), "plain"),
        (UDP_AVP, STRICT, "plain RTP over UDP is refused on this path (encryption = strict)"),
        ("RTP/AVP;multicast", STRICT, "plain RTP over UDP is refused"),
        ("RTP/AVP/TCP;interleaved=0-1", STRICT, "plain"),  # inside TLS
        # ffmpeg reads a=crypto but asks RTP/AVP: the keys its DESCRIBE got make it SRTP
        (UDP_AVP, replace(STRICT, keys_offered=True), "srtp"),
        ("RTP/AVP/TCP;interleaved=0-1", replace(SECURE, keys_offered=True), "srtp"),
        (UDP_AVP, replace(ALL, keys_offered=True), "plain"),  # never over plain RTSP
        # the first usable alternative wins, the 461 lists every reason
        (f"{UDP_SAVP},{UDP_AVP}", ALL, "plain"),
        (f"{UDP_AVP},{UDP_SAVP}", STRICT, "srtp"),
    ],
)
def test_srtp_by_profile_policy_and_connection(header: str, facts: TransportFacts, expected: str) -> None:
    if expected in ("srtp", "plain"):
        chosen = choose_transport(offers(header), None, facts)
        assert uses_srtp(chosen, facts) is (expected == "srtp")
    else:
        assert expected in refusal(header, facts)


def test_publishers_srtp_profile_follows_the_same_policy() -> None:
    savp = offers("RTP/SAVP;unicast;client_port=2-3;mode=record")
    with pytest.raises(RtspError) as err:
        choose_record_transport(savp, udp=True)
    assert err.value.status == 461 and "needs RTSPS" in err.value.reason
    assert choose_record_transport(savp, udp=True, facts=SECURE).profile == "RTP/SAVP"
    with pytest.raises(RtspError) as err:
        choose_record_transport(offers("RTP/AVP;unicast;client_port=2-3;mode=record"), udp=True, facts=STRICT)
    assert "encryption = strict" in err.value.reason
    assert choose_record_transport(offers("RTP/AVP/TCP;mode=record"), udp=True, facts=STRICT).is_tcp


def test_a_session_keeps_its_lower_transport_and_cast() -> None:
    s = RtspServerSession("test", 60)
    s.setup(udp(0))
    assert refusal("RTP/AVP/TCP", session=s) == "session already uses UDP"
    assert refusal("RTP/AVP;multicast", session=s) == "session already uses unicast"
    s.multicast = True
    assert refusal("RTP/AVP;unicast;client_port=2-3", session=s) == "session already uses multicast"


def test_record_transport_and_destination() -> None:
    assert choose_record_transport(offers("RTP/AVP/TCP;mode=record"), udp=False).lower_transport == "TCP"
    for header, udp_on in (("RTP/AVP;unicast", True), ("RTP/AVP;unicast;client_port=2-3;mode=record", False)):
        with pytest.raises(RtspError) as err:
            choose_record_transport(offers(header), udp=udp_on)
        assert err.value.status == 461
    offer = offers("RTP/AVP;unicast;client_port=2-3;destination=10.9.9.9")[0]
    with pytest.raises(RtspError) as err:
        check_destination(offer, "10.0.0.1")
    assert err.value.status == 403
    check_destination(offer, "10.9.9.9")


def test_interleaved_channels() -> None:
    assert free_channels(set()) == (0, 1)
    assert free_channels({0, 1, 3}) == (4, 5)
    assert pick_channels((8, 9), {0, 1}) == (8, 9)
    assert pick_channels((0, 1), {0, 1}) == (2, 3)  # taken: the lowest free pair instead
    assert pick_channels(None, {1}) == (2, 3)
    with pytest.raises(RtspError) as err:
        free_channels(set(range(256)))
    assert err.value.status == 461


# --- PLAY rules -----------------------------------------------------------------------------------

FILE = PlayFacts(duration=Fraction(10), has_video=True)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, PlayParams()),
        ({"Range": "npt=2-5"}, PlayParams(Fraction(2), Fraction(5))),
        ({"Range": "npt=now-"}, PlayParams()),
        ({"Range": "npt=2-10"}, PlayParams(Fraction(2), None)),  # to the end anyway
        ({"Scale": "2"}, PlayParams(scale=Fraction(2))),
        ({"Scale": "1000"}, PlayParams(scale=Fraction(64))),
        ({"Speed": "100"}, PlayParams(speed=Fraction(16))),
    ],
)
def test_play_params(headers: dict[str, str], expected: PlayParams) -> None:
    assert play_params(headers, FILE) == expected


@pytest.mark.parametrize(
    ("headers", "facts", "status"),
    [
        ({"Range": "npt=11-"}, FILE, 457),
        ({"Range": "npt=5-3"}, FILE, 457),
        ({"Scale": "-1"}, FILE, 456),
        ({"Scale": "0"}, FILE, 456),
        ({"Scale": "2"}, PlayFacts(Fraction(10), has_video=False), 456),
        ({"Scale": "2"}, PlayFacts(Fraction(10), has_video=True, whole_mpegts=True), 456),
        ({"Speed": "0"}, FILE, 456),
    ],
)
def test_play_params_refused(headers: dict[str, str], facts: PlayFacts, status: int) -> None:
    with pytest.raises(RtspError) as err:
        play_params(headers, facts)
    assert err.value.status == status


def test_range_and_rtp_info_headers() -> None:
    assert range_header(Fraction(2), None, Fraction(10)) == "npt=2-10"
    assert range_header(Fraction(0), None, None) == "npt=0-"
    header = rtp_info_header("rtsp://h/a.mp4/trackID=0", [("trackID=0", 7, 100), ("trackID=1", 9, 200)])
    entries = parse_rtp_info(header)
    assert [(e.url, e.seq, e.rtptime) for e in entries] == [
        ("rtsp://h/a.mp4/trackID=0", 7, 100),
        ("rtsp://h/a.mp4/trackID=1", 9, 200),
    ]


def test_parameters() -> None:
    known = {"position": "1.000", "state": "ready"}
    assert get_parameters([], known) is None
    assert get_parameters(["state"], known) == b"state: ready\r\n"
    for call in (lambda: get_parameters(["nope"], known), lambda: set_parameters({"nope": "1"}, known)):
        with pytest.raises(RtspError) as err:
            call()
        assert err.value.status == 451
    with pytest.raises(RtspError) as err:
        set_parameters({"position": "3"}, known)
    assert err.value.status == 458
    set_parameters({}, known)
