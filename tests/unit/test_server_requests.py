"""Every RTSP method in every state, through the real request handling, in-process (tests/unit/harness.py):
players and publishers, reaping by moving the clock, RTCP keep-alives, and the hardening rules
(sessions bound to their client, caps, publisher ports, what the API and metrics show)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from aiortc.rtp import RtcpRrPacket, RtpPacket

from streamd.http.app import build_app
from tests.unit.harness import (
    ANNOUNCED,
    FakeConnection,
    Harness,
    receiver_report,
    session_id,
    until,
)

TCP = {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"}
UDP = {"Transport": "RTP/AVP;unicast;client_port=5000-5001"}
RECORD_TCP = {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record"}
RECORD_UDP = {"Transport": "RTP/AVP;unicast;client_port=7000-7001;mode=record"}
SDP = {"Content-Type": "application/sdp"}


@pytest_asyncio.fixture
async def h(media: Path) -> AsyncIterator[Harness]:
    harness = Harness(media)
    yield harness
    await harness.close()


async def play_session(h: Harness, c: FakeConnection, transport: dict[str, str] = TCP) -> str:
    assert (await h.request(c, "DESCRIBE", "clip.mp4")).status == 200
    setup = await h.request(c, "SETUP", "clip.mp4/trackID=0", transport)
    assert setup.status == 200, setup
    return session_id(setup)


async def publish(h: Harness, c: FakeConnection, transport: dict[str, str] = RECORD_TCP) -> str:
    announce = await h.request(c, "ANNOUNCE", "live/cam", SDP, ANNOUNCED.encode())
    assert announce.status == 200
    sid = session_id(announce)
    assert (await h.request(c, "SETUP", "live/cam/streamid=0", transport, session=sid)).status == 200
    return sid


def rtp(seq: int, marker: bool = True) -> bytes:
    packet = RtpPacket(
        payload_type=96, marker=int(marker), sequence_number=seq, timestamp=1000 * seq, ssrc=0x42
    )
    packet.payload = bytes([0x65, 0x88, 0x84, 0x00])  # an IDR slice NAL unit
    return packet.serialize()


# --- players: every method in every state ---------------------------------------------------------


async def test_player_through_every_state(h: Harness) -> None:
    c = h.connect()
    options = await h.request(c, "OPTIONS", "*")
    assert options.status == 200 and "GET_PARAMETER" in options.headers["Public"]
    describe = await h.request(c, "DESCRIBE", "clip.mp4")
    assert describe.status == 200 and b"m=video" in describe.body
    assert describe.headers["Content-Base"] == "rtsp://10.0.0.254:554/clip.mp4/"
    assert (await h.request(c, "DESCRIBE", "clip.mp4/trackID=0")).status == 404
    assert (await h.request(c, "DESCRIBE", "nothing.mp4")).status == 404
    # INIT: no session yet, so every session method is 454
    for method in ("PLAY", "PAUSE", "TEARDOWN", "RECORD"):
        assert (await h.request(c, method, "clip.mp4", session="nosuchsession")).status == 454
    assert (await h.request(c, "PLAY", "clip.mp4")).status == 454  # no Session header
    # -> READY
    setup = await h.request(c, "SETUP", "clip.mp4/trackID=0", TCP)
    assert setup.status == 200
    sid = session_id(setup)
    assert setup.headers["Session"] == f"{sid};timeout=60"
    assert "interleaved=0-1" in setup.headers["Transport"] and "ssrc=" in setup.headers["Transport"]
    second = await h.request(c, "SETUP", "clip.mp4/trackID=1", TCP, session=sid)
    assert second.status == 200 and "interleaved=2-3" in second.headers["Transport"]  # 0-1 is taken
    assert (await h.request(c, "PAUSE", "clip.mp4", session=sid)).status == 200  # READY: no change
    assert (await h.request(c, "RECORD", "clip.mp4", session=sid)).status == 455
    assert (await h.request(c, "FLY", "clip.mp4", session=sid)).status == 501
    state = await h.request(
        c, "GET_PARAMETER", "clip.mp4", {"Content-Type": "text/parameters"}, b"state\r\n", session=sid
    )
    assert state.status == 200 and state.body == b"state: ready\r\n"
    # -> PLAYING
    play = await h.request(c, "PLAY", "clip.mp4", {"Range": "npt=0-"}, session=sid)
    assert play.status == 200 and play.headers["Range"].startswith("npt=0")
    assert play.headers["RTP-Info"].startswith("url=rtsp://10.0.0.254:554/clip.mp4/trackID=")
    await until(lambda: any(f.channel == 0 for f in c.frames))  # RTP arrives on its channel
    assert (await h.request(c, "SETUP", "clip.mp4/trackID=0", TCP, session=sid)).status == 455
    keepalive = await h.request(c, "PLAY", "clip.mp4", session=sid)  # repeated PLAY: nothing changes
    assert keepalive.status == 200 and "RTP-Info" not in keepalive.headers
    assert (await h.request(c, "GET_PARAMETER", "clip.mp4", session=sid)).status == 200  # keep-alive
    unknown = await h.request(c, "GET_PARAMETER", "clip.mp4", {}, b"volume\r\n", session=sid)
    assert unknown.status == 451
    assert (
        await h.request(c, "SET_PARAMETER", "clip.mp4", {}, b"position: 3\r\n", session=sid)
    ).status == 458
    assert (await h.request(c, "SET_PARAMETER", "clip.mp4", session=sid)).status == 200
    # -> READY again, then PLAY resumes
    pause = await h.request(c, "PAUSE", "clip.mp4", session=sid)
    assert pause.status == 200 and pause.headers["Range"].startswith("npt=")
    assert (await h.request(c, "PLAY", "clip.mp4", session=sid)).status == 200
    assert (await h.request(c, "PLAY", "clip.mp4", {"Range": "npt=5-"}, session=sid)).status == 457
    assert (await h.request(c, "PLAY", "clip.mp4", {"Scale": "-1"}, session=sid)).status == 456
    # per-track TEARDOWN, then the session's
    one = await h.request(c, "TEARDOWN", "clip.mp4/trackID=1", session=sid)
    assert one.status == 200 and one.headers["Session"].startswith(sid)
    assert (await h.request(c, "TEARDOWN", "clip.mp4", session=sid)).status == 200
    assert sid not in h.server.sessions
    assert (await h.request(c, "GET_PARAMETER", "clip.mp4", session=sid)).status == 454


async def test_setup_transport_rules(h: Harness) -> None:
    c = h.connect()
    sid = await play_session(h, c, UDP)
    assert (await h.request(c, "SETUP", "clip.mp4/trackID=1", TCP, session=sid)).status == 461
    wrong_path = await h.request(c, "SETUP", "other.mp4/trackID=0", UDP, session=sid)
    assert wrong_path.status == 459
    far = {"Transport": "RTP/AVP;unicast;client_port=5000-5001;destination=10.9.9.9"}
    assert (await h.request(c, "SETUP", "clip.mp4/trackID=0", far)).status == 403
    assert (await h.request(c, "SETUP", "clip.mp4/trackID=0", {"Transport": "RTP/AVP;unicast"})).status == 461
    assert (await h.request(c, "SETUP", "clip.mp4/trackID=0")).status == 461
    assert (await h.request(c, "SETUP", "clip.mp4")).status == 459  # two tracks: name one
    assert (await h.request(c, "SETUP", "clip.mp4/trackID=9", UDP)).status == 404
    reply = await h.request(c, "SETUP", "clip.mp4/trackID=1", UDP, session=sid)
    assert "server_port=6970-6971" in reply.headers["Transport"]


async def test_udp_play_sends_to_the_client_ports_and_rtcp_keeps_it_alive(h: Harness) -> None:
    c = h.connect()
    sid = await play_session(h, c, UDP)
    assert (await h.request(c, "PLAY", "clip.mp4", session=sid)).status == 200
    await until(lambda: bool(h.udp.rtp))
    assert {addr for _, addr in h.udp.rtp} == {("10.0.0.1", 5000)}
    session = h.server.sessions.get(sid)
    ssrc = next(iter(session.bindings.values())).stream.ssrc  # type: ignore[union-attr]
    h.clock.advance(50)
    h.server.inbound.rtcp_datagram(receiver_report(ssrc), ("10.0.0.1", 5001))  # a keep-alive
    h.server.inbound.rtcp_datagram(receiver_report(ssrc), ("10.0.0.1", 5000))  # wrong port: ignored
    h.clock.advance(50)
    await h.reap()
    assert sid in h.server.sessions, "RTCP within the timeout keeps the session"
    h.clock.advance(61)
    await h.reap()
    assert sid not in h.server.sessions, "silence beyond the timeout ends it"
    assert (await h.request(c, "PLAY", "clip.mp4", session=sid)).status == 454


async def test_interleaved_rtcp_is_a_keep_alive_and_closing_the_connection_ends_tcp_sessions(
    h: Harness,
) -> None:
    c = h.connect()
    sid = await play_session(h, c, TCP)
    h.clock.advance(59)
    h.interleaved(c, 1, receiver_report(1))
    h.clock.advance(59)
    await h.reap()
    assert sid in h.server.sessions
    h.disconnect(c)
    await h.server.lifecycle.wait()
    assert sid not in h.server.sessions


async def test_an_rr_without_report_blocks_from_the_client_is_a_keep_alive(h: Harness) -> None:
    """Players that receive nothing yet (or send bare RRs) still keep their UDP session by RTCP."""
    c = h.connect()
    sid = await play_session(h, c, UDP)
    assert (await h.request(c, "PLAY", "clip.mp4", session=sid)).status == 200
    for _ in range(3):  # 150 s > the 60 s timeout, an empty RR every 50 s from the client's RTCP port
        h.clock.advance(50)
        h.server.inbound.rtcp_datagram(bytes(RtcpRrPacket(ssrc=1)), ("10.0.0.1", 5001))
        await h.reap()
        assert sid in h.server.sessions
    h.clock.advance(61)
    await h.reap()
    assert sid not in h.server.sessions


async def test_get_parameter_is_a_keep_alive(h: Harness) -> None:
    c = h.connect()
    sid = await play_session(h, c, UDP)
    assert (await h.request(c, "PLAY", "clip.mp4", session=sid)).status == 200
    for _ in range(3):  # 150 s > the 60 s timeout, with a keep-alive every 50 s
        h.clock.advance(50)
        await h.reap()
        assert (await h.request(c, "GET_PARAMETER", "clip.mp4", session=sid)).status == 200
    h.clock.advance(61)
    await h.reap()
    assert sid not in h.server.sessions


async def test_reaper_ends_silent_sessions_only(h: Harness) -> None:
    c = h.connect()
    quiet = await play_session(h, c, UDP)
    h.clock.advance(40)
    chatty = await play_session(h, c, UDP)
    h.clock.advance(30)
    await h.reap()
    assert quiet not in h.server.sessions and chatty in h.server.sessions


# --- publishers ---------------------------------------------------------------------------------------


async def test_publisher_through_every_state(h: Harness) -> None:
    p = h.connect("10.0.0.2")
    assert (await h.request(p, "ANNOUNCE", "clip.mp4", SDP, ANNOUNCED.encode())).status == 403  # not live/
    announce = await h.request(p, "ANNOUNCE", "live/cam", SDP, ANNOUNCED.encode())
    assert announce.status == 200
    sid = session_id(announce)
    assert (await h.request(p, "RECORD", "live/cam", session=sid)).status == 455  # before SETUP
    assert (await h.request(p, "PLAY", "live/cam", session=sid)).status == 455
    assert (await h.request(p, "PAUSE", "live/cam", session=sid)).status == 455
    no_record = await h.request(p, "SETUP", "live/cam/streamid=0", TCP, session=sid)
    assert no_record.status == 461
    assert (await h.request(p, "SETUP", "live/cam/streamid=0", RECORD_TCP, session=sid)).status == 200
    assert (await h.request(p, "DESCRIBE", "live/cam")).status == 404  # not live before RECORD
    assert (await h.request(p, "RECORD", "live/cam", session=sid)).status == 200
    live = h.server.paths.live["live/cam"]
    assert live.online and h.server.live_paths() == ["live/cam"]
    # a reader plays it
    r = h.connect("10.0.0.3")
    assert (await h.request(r, "DESCRIBE", "live/cam")).status == 200
    reader = session_id(await h.request(r, "SETUP", "live/cam/trackID=0", TCP))
    play = await h.request(r, "PLAY", "live/cam", session=reader)
    assert play.status == 200 and play.headers["Range"] == "npt=now-"
    h.interleaved(p, 0, rtp(1))
    assert live.tracks[0].packets == 1
    state = await h.request(p, "GET_PARAMETER", "live/cam", {}, b"state\r\n", session=sid)
    assert state.body == b"state: recording\r\n"
    # PAUSE takes the path offline; RECORD brings it back
    assert (await h.request(p, "PAUSE", "live/cam", session=sid)).status == 200
    assert not live.online and (await h.request(r, "DESCRIBE", "live/cam")).status == 404
    assert (await h.request(p, "RECORD", "live/cam", session=sid)).status == 200
    assert live.online
    assert (await h.request(p, "TEARDOWN", "live/cam", session=sid)).status == 200
    await h.server.lifecycle.wait()
    assert not live.online and "live/cam" not in h.server.paths.live


async def test_a_path_has_one_publisher(h: Harness) -> None:
    first = h.connect("10.0.0.2")
    sid = await publish(h, first)
    other = h.connect("10.0.0.3")
    early = await publish(h, other)  # announced, not yet recording: both may prepare
    assert (await h.request(first, "RECORD", "live/cam", session=sid)).status == 200
    assert (await h.request(other, "RECORD", "live/cam", session=early)).status == 403
    busy = await h.request(other, "ANNOUNCE", "live/cam", SDP, ANNOUNCED.encode())
    assert busy.status == 403 and busy.body == b"busy\n"


async def test_publisher_udp_is_accepted_from_the_negotiated_ports_only(h: Harness) -> None:
    p = h.connect("10.0.0.2")
    sid = await publish(h, p, RECORD_UDP)
    assert (await h.request(p, "RECORD", "live/cam", session=sid)).status == 200
    track = h.server.paths.live["live/cam"].tracks[0]
    assert h.server.inbound.rtp_datagram(rtp(1), ("10.0.0.2", 7000))
    assert not h.server.inbound.rtp_datagram(rtp(2), ("10.0.0.2", 7002)), "another port of the client"
    assert not h.server.inbound.rtp_datagram(rtp(3), ("10.0.0.9", 7000)), "another host"
    assert not h.server.inbound.rtp_datagram(rtp(4), ("10.0.0.2", 7001)), "its RTCP port, at our RTP socket"
    h.server.inbound.rtcp_datagram(rtp(5), ("10.0.0.2", 7000))  # its RTP port, at our RTCP socket
    assert track.packets == 1


# --- hardening: sessions are bound to their client -----------------------------------------------------


async def test_another_connection_cannot_use_a_tcp_session(h: Harness) -> None:
    victim = h.connect("10.0.0.1")
    sid = await play_session(h, victim, TCP)
    assert (await h.request(victim, "PLAY", "clip.mp4", session=sid)).status == 200
    attacker = h.connect(
        "10.0.0.1"
    )  # even from the same address: interleaved sessions live on their connection
    for method, headers in (
        ("TEARDOWN", {}),
        ("PAUSE", {}),
        ("PLAY", {}),
        ("GET_PARAMETER", {}),
        ("SET_PARAMETER", {}),
        ("OPTIONS", {}),
    ):
        assert (await h.request(attacker, method, "clip.mp4", headers, session=sid)).status == 454, method
    assert (await h.request(attacker, "SETUP", "clip.mp4/trackID=0", TCP, session=sid)).status == 454
    before = len(victim.frames)
    await until(lambda: len(victim.frames) > before)  # the victim keeps receiving
    assert (await h.request(victim, "GET_PARAMETER", "clip.mp4", session=sid)).status == 200


async def test_a_udp_session_follows_its_client_address_only(h: Harness) -> None:
    first = h.connect("10.0.0.1")
    sid = await play_session(h, first, UDP)
    h.disconnect(first)
    assert sid in h.server.sessions, "UDP sessions outlive their connection"
    stranger = h.connect("10.0.0.66")
    assert (await h.request(stranger, "TEARDOWN", "clip.mp4", session=sid)).status == 454
    moved = await h.request(stranger, "SETUP", "clip.mp4/trackID=0", UDP, session=sid)
    assert moved.status == 454, "a re-SETUP would move the stream to the attacker"
    again = h.connect("10.0.0.1")
    assert (await h.request(again, "PLAY", "clip.mp4", session=sid)).status == 200
    assert (await h.request(again, "TEARDOWN", "clip.mp4", session=sid)).status == 200


async def test_nobody_else_can_take_a_publisher_over(h: Harness) -> None:
    owner = h.connect("10.0.0.2")
    sid = await publish(h, owner, RECORD_TCP)
    assert (await h.request(owner, "RECORD", "live/cam", session=sid)).status == 200
    attacker = h.connect("10.0.0.2")
    for method in ("TEARDOWN", "PAUSE", "RECORD"):
        assert (await h.request(attacker, method, "live/cam", session=sid)).status == 454, method
    takeover = await h.request(attacker, "SETUP", "live/cam/streamid=0", RECORD_TCP, session=sid)
    assert takeover.status == 454
    h.interleaved(attacker, 0, rtp(1))  # feeding the path from another connection
    assert h.server.paths.live["live/cam"].tracks[0].packets == 0
    h.interleaved(owner, 0, rtp(2))
    assert h.server.paths.live["live/cam"].tracks[0].packets == 1


# --- hardening: caps --------------------------------------------------------------------------------


async def test_session_caps(media: Path) -> None:
    h = Harness(media, max_sessions=3, max_sessions_per_client=2, max_sessions_per_connection=1)
    try:
        a = h.connect("10.0.0.1")
        await play_session(h, a, UDP)
        refused = await h.request(a, "SETUP", "clip.mp4/trackID=0", UDP)
        assert refused.status == 453, "max_sessions_per_connection"
        await play_session(h, h.connect("10.0.0.1"), UDP)
        assert (await h.request(h.connect("10.0.0.1"), "SETUP", "clip.mp4/trackID=0", UDP)).status == 453
        await play_session(h, h.connect("10.0.0.2"), UDP)
        assert (await h.request(h.connect("10.0.0.3"), "SETUP", "clip.mp4/trackID=0", UDP)).status == 503
        assert len(h.server.sessions) == 3
    finally:
        await h.close()


async def test_publisher_caps(media: Path) -> None:
    h = Harness(media, max_publishers=2, max_publishers_per_client=1)
    try:
        body = ANNOUNCED.encode()
        assert (await h.request(h.connect("10.0.0.1"), "ANNOUNCE", "live/a", SDP, body)).status == 200
        assert (await h.request(h.connect("10.0.0.1"), "ANNOUNCE", "live/b", SDP, body)).status == 453
        assert (await h.request(h.connect("10.0.0.2"), "ANNOUNCE", "live/c", SDP, body)).status == 200
        assert (await h.request(h.connect("10.0.0.3"), "ANNOUNCE", "live/d", SDP, body)).status == 503
    finally:
        await h.close()


# --- hardening: what the API and metrics show ----------------------------------------------------------


async def test_sessions_api_hides_ids_from_non_admins_and_pages(media: Path) -> None:
    h = Harness(media, admin_token="sesame", users=())  # no [[users]]: the admin_networks rule
    client = TestClient(TestServer(build_app(h.server, h.server.catalog)))  # type: ignore[arg-type]
    await client.start_server()
    try:
        c = h.connect()
        ids = {await play_session(h, c, UDP) for _ in range(3)}
        public = await (await client.get("/api/v1/sessions")).json()
        assert len(public["sessions"]) == 3 and public["more"] is False
        assert all("id" not in s and "client" not in s for s in public["sessions"])
        admin = {"Authorization": "Bearer sesame"}
        full = await (await client.get("/api/v1/sessions", headers=admin)).json()
        assert {s["id"] for s in full["sessions"]} == ids and full["sessions"][0]["client"] == "10.0.0.1"
        page = await (await client.get("/api/v1/sessions?limit=2&offset=0", headers=admin)).json()
        rest = await (await client.get("/api/v1/sessions?limit=2&offset=2", headers=admin)).json()
        assert len(page["sessions"]) == 2 and page["more"] and len(rest["sessions"]) == 1 and not rest["more"]
        assert {s["id"] for s in page["sessions"] + rest["sessions"]} == ids
        metrics = await (await client.get("/metrics")).text()
        assert 'streamd_sessions{path="clip.mp4",state="ready",transport="UDP"} 3.0' in metrics
        assert not any(i in metrics for i in ids)
    finally:
        await client.close()
        await h.close()


# --- the generated table, through the real handling: every method in every state ---------------------

GONE = "gone"
KEEP = "keep"
# start -> method -> (status, state after: a State value, KEEP (unchanged), GONE (session ended))
TABLE: dict[str, dict[str, tuple[int, str]]] = {
    "none": {
        "OPTIONS": (200, KEEP),
        "DESCRIBE": (200, KEEP),
        "SETUP": (200, "ready"),  # a new session
        "PLAY": (454, KEEP),
        "PAUSE": (454, KEEP),
        "TEARDOWN": (454, KEEP),
        "GET_PARAMETER": (200, KEEP),
        "SET_PARAMETER": (200, KEEP),
        "ANNOUNCE": (200, KEEP),  # a new publisher's session
        "RECORD": (454, KEEP),
        "FLY": (501, KEEP),
    },
    "player ready": {
        "OPTIONS": (200, KEEP),
        "DESCRIBE": (200, KEEP),
        "SETUP": (200, "ready"),
        "PLAY": (200, "playing"),
        "PAUSE": (200, "ready"),
        "TEARDOWN": (200, GONE),
        "GET_PARAMETER": (200, KEEP),
        "SET_PARAMETER": (200, KEEP),
        "ANNOUNCE": (200, KEEP),
        "RECORD": (455, KEEP),
        "FLY": (501, KEEP),
    },
    "player playing": {
        "OPTIONS": (200, KEEP),
        "DESCRIBE": (200, KEEP),
        "SETUP": (455, KEEP),
        "PLAY": (200, "playing"),
        "PAUSE": (200, "ready"),
        "TEARDOWN": (200, GONE),
        "GET_PARAMETER": (200, KEEP),
        "SET_PARAMETER": (200, KEEP),
        "ANNOUNCE": (200, KEEP),
        "RECORD": (455, KEEP),
        "FLY": (501, KEEP),
    },
    "publisher ready": {
        "OPTIONS": (200, KEEP),
        "DESCRIBE": (200, KEEP),
        "SETUP": (200, "ready"),
        "PLAY": (455, KEEP),
        "PAUSE": (200, "ready"),
        "TEARDOWN": (200, GONE),
        "GET_PARAMETER": (200, KEEP),
        "SET_PARAMETER": (200, KEEP),
        "ANNOUNCE": (200, KEEP),
        "RECORD": (200, "recording"),
        "FLY": (501, KEEP),
    },
    "publisher recording": {
        "OPTIONS": (200, KEEP),
        "DESCRIBE": (200, KEEP),
        "SETUP": (200, "recording"),
        "PLAY": (455, KEEP),
        "PAUSE": (200, "ready"),
        "TEARDOWN": (200, GONE),
        "GET_PARAMETER": (200, KEEP),
        "SET_PARAMETER": (200, KEEP),
        "ANNOUNCE": (200, KEEP),
        "RECORD": (200, "recording"),
        "FLY": (501, KEEP),
    },
}


async def _start(h: Harness, c: FakeConnection, start: str) -> tuple[str | None, str, str]:
    """Bring a session to ``start``: (its id, its path, the control URL of its track)."""
    if start == "none":
        return None, "clip.mp4", "clip.mp4/trackID=0"
    if start.startswith("player"):
        sid = await play_session(h, c, TCP)
        if start == "player playing":
            assert (await h.request(c, "PLAY", "clip.mp4", session=sid)).status == 200
        return sid, "clip.mp4", "clip.mp4/trackID=0"
    sid = await publish(h, c, RECORD_TCP)
    if start == "publisher recording":
        assert (await h.request(c, "RECORD", "live/cam", session=sid)).status == 200
    return sid, "live/cam", "live/cam/streamid=0"


@pytest.mark.parametrize(("start", "method"), [(s, m) for s in TABLE for m in TABLE[s]])
async def test_every_method_in_every_state_through_the_handlers(h: Harness, start: str, method: str) -> None:
    c = h.connect()
    sid, path, control = await _start(h, c, start)
    before = h.server.sessions.get(sid).rtsp.state.value if sid else None  # type: ignore[union-attr]
    headers: dict[str, str] = {}
    body = b""
    uri = path
    if method == "SETUP":
        uri, headers = control, (RECORD_TCP if path.startswith("live/") else TCP)
    elif method == "ANNOUNCE":
        uri, headers, body = "live/other", SDP, ANNOUNCED.encode()
    elif method == "DESCRIBE":
        uri = "clip.mp4"
    response = await h.request(c, method, uri, headers, body, session=sid)
    status, after = TABLE[start][method]
    assert response.status == status, response
    await h.server.lifecycle.wait()
    if sid is None:
        if method == "SETUP":
            assert h.server.sessions.get(session_id(response)).rtsp.state.value == after  # type: ignore[union-attr]
        return
    session = h.server.sessions.get(sid)
    if after == GONE:
        assert session is None
        return
    assert session is not None
    assert session.rtsp.state.value == (before if after == KEEP else after)


async def test_the_reaper_sweeps_every_reap_interval(media: Path) -> None:
    h = Harness(media, reap_interval=0.01, session_timeout=2, min_session_timeout=1)
    reaper = asyncio.get_running_loop().create_task(h.server._reap())
    try:
        c = h.connect()
        sid = await play_session(h, c, UDP)
        assert h.server.sessions.get(sid).rtsp.timeout == 2  # type: ignore[union-attr]
        h.clock.advance(3)
        await until(lambda: sid not in h.server.sessions)
    finally:
        reaper.cancel()
        await h.close()


async def test_metrics_count_what_the_login_limits_did(media: Path) -> None:
    h = Harness(media, users=())  # no [[users]]: metrics are open to loopback
    h.server.authenticator.limits.failed("10.0.0.9", "eve", 0.0)
    h.server.auth_counters["auth_deadline_closes"] += 2
    client = TestClient(TestServer(build_app(h.server, h.server.catalog)))  # type: ignore[arg-type]
    await client.start_server()
    try:
        text = await (await client.get("/metrics")).text()
    finally:
        await client.close()
    assert "streamd_auth_failures_total 1.0" in text
    assert "streamd_auth_deadline_closes_total 2.0" in text
    assert "streamd_auth_backoffs_total 0.0" in text


async def test_a_pause_on_a_late_machine_resumes_where_sending_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PAUSE comes when the clock is 630 ms past the last pump (a loaded machine): the resumed
    PLAY's Range and RTP-Info start at the first unit not sent, which is the first packet sent."""
    from media.testsrc import write_synthetic_media
    from streamd.playback import Playback
    from streamd.rtsp.headers.rtp_info import parse_rtp_info

    write_synthetic_media(tmp_path / "clip.mp4", seconds=3, size=(64, 48), fps=10, bframes=False)
    h = Harness(tmp_path)
    try:
        c = h.connect()
        assert (await h.request(c, "DESCRIBE", "clip.mp4")).status == 200
        sid = session_id(await h.request(c, "SETUP", "clip.mp4/trackID=0", TCP))
        both = {"Transport": "RTP/AVP/TCP;unicast;interleaved=2-3"}
        assert (await h.request(c, "SETUP", "clip.mp4/trackID=1", both, session=sid)).status == 200
        assert (await h.request(c, "PLAY", "clip.mp4", {"Range": "npt=0-"}, session=sid)).status == 200
        await until(lambda: sum(f.channel == 0 for f in c.frames) >= 3)
        loop = asyncio.get_running_loop()
        monkeypatch.setattr(Playback, "_now", staticmethod(lambda: loop.time() + 0.63))
        pause = await h.request(c, "PAUSE", "clip.mp4", session=sid)
        monkeypatch.undo()
        before = len(c.frames)
        play = await h.request(c, "PLAY", "clip.mp4", session=sid)
        assert play.status == 200
        assert play.headers["Range"].split("-")[0] == pause.headers["Range"].split("-")[0]
        info = {e.url.rsplit("=", 1)[1]: e for e in parse_rtp_info(play.headers["RTP-Info"])}
        await until(lambda: {0, 2} <= {f.channel for f in c.frames[before:]})
        first = {}
        for frame in c.frames[before:]:
            if frame.channel in (0, 2):
                first.setdefault(frame.channel // 2, RtpPacket.parse(frame.payload))
        after = {int(i): (p.timestamp - info[str(i)].rtptime) % 2**32 for i, p in first.items()}
        assert all(p.sequence_number == info[str(i)].seq for i, p in first.items())
        assert min(after.values()) == 0 and max(after.values()) < 90000  # no jump past what was sent

        def frames() -> list[int]:  # the video frames' timestamps, in sending order
            stamps = [RtpPacket.parse(f.payload).timestamp for f in c.frames if f.channel == 0]
            return [t for n, t in enumerate(stamps) if n == 0 or t != stamps[n - 1]]

        await until(lambda: len(frames()) >= 30)  # 3 s at 10 fps
        assert len(frames()) == len(set(frames())) == 30  # every frame once across the pause
        seqs = [RtpPacket.parse(f.payload).sequence_number for f in c.frames if f.channel == 0]
        assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(seqs))  # no gap
    finally:
        await h.close()
