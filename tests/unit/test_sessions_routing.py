"""The session registry and the routing table as plain data: no loop, no clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamd.catalog import Resolved
from streamd.routing import PacketRoutes, Route
from streamd.rtsp.errors import RtspError
from streamd.rtsp.server_session import RtspServerSession
from streamd.server_session import PlayerSession
from streamd.sessions import Caps, SessionRegistry, may_use
from tests.unit.harness import FakeConnection


def player(owner: FakeConnection, last: float, timeout: int = 60, tcp: bool = False) -> PlayerSession:
    session = PlayerSession(
        rtsp=RtspServerSession("a.mp4", timeout),
        resolved=Resolved(None, Path("")),  # type: ignore[arg-type]
        client_host=owner.peer[0],
        label="t",
        owner=owner,  # type: ignore[arg-type]
        connection=owner if tcp else None,  # type: ignore[arg-type]
        last_activity=last,
    )
    owner.sessions.add(session.id)
    return session


def test_expired_is_a_pure_question_of_now() -> None:
    registry = SessionRegistry()
    c = FakeConnection()
    old, fresh = player(c, 0.0), player(c, 50.0, timeout=10)
    registry.add(old)
    registry.add(fresh)
    assert registry.expired(60.0) == []
    assert registry.expired(60.5) == [old, fresh]
    assert registry.expired(59.0) == []
    assert len(registry) == 2, "asking ends nothing"


def test_ownership() -> None:
    home, same_host, elsewhere = (
        FakeConnection("10.0.0.1"),
        FakeConnection("10.0.0.1"),
        FakeConnection("10.0.0.2"),
    )
    udp, tcp = player(home, 0), player(home, 0, tcp=True)
    assert may_use(udp, home) and may_use(udp, same_host) and not may_use(udp, elsewhere)
    assert may_use(tcp, home) and not may_use(tcp, same_host) and not may_use(tcp, elsewhere)
    registry = SessionRegistry()
    registry.add(udp)
    with pytest.raises(RtspError) as err:
        registry.of_request(udp.id, elsewhere, required=True, method="PLAY")  # type: ignore[arg-type]
    assert err.value.status == 454
    assert registry.of_request(udp.id, same_host, required=True, method="PLAY") is udp  # type: ignore[arg-type]
    assert udp.owner is same_host, "the client came back on a new connection"


def test_caps() -> None:
    registry = SessionRegistry(Caps(sessions=2, sessions_per_client=1, sessions_per_connection=1))
    a = FakeConnection("10.0.0.1")
    registry.add(player(a, 0))
    for client, status in ((a, 453), (FakeConnection("10.0.0.1"), 453)):
        with pytest.raises(RtspError) as err:
            registry.check_new_session(client)  # type: ignore[arg-type]
        assert err.value.status == status
    registry.add(player(FakeConnection("10.0.0.2"), 0))
    with pytest.raises(RtspError) as err:
        registry.check_new_session(FakeConnection("10.0.0.3"))  # type: ignore[arg-type]
    assert err.value.status == 503


def test_routes() -> None:
    routes = PacketRoutes()
    a, b = FakeConnection(), FakeConnection()
    routes.add_udp(("10.0.0.1", 5001), Route("s1", 0, True))
    routes.add_udp(("10.0.0.1", 7000), Route("s2", 0, False, publisher=True))
    routes.add_channel(a, 0, Route("s3", 0, False))
    routes.add_channel(a, 1, Route("s3", 0, True))
    routes.add_channel(a, 2, Route("s3", 1, False))
    assert routes.udp(("10.0.0.1", 5001), rtcp=True) == Route("s1", 0, True)
    assert routes.udp(("10.0.0.1", 5001), rtcp=False) is None, "RTCP's port, at the RTP socket"
    assert routes.udp(("10.0.0.1", 5000), rtcp=True) is None
    assert routes.channel(a, 1) == Route("s3", 0, True) and routes.channel(b, 1) is None
    assert routes.used_channels(a) == {0, 1, 2}
    assert routes.used_channels(a, besides=("s3", 0)) == {2}
    routes.forget_track("s3", 0)
    assert routes.used_channels(a) == {2}
    routes.forget_session("s1")
    routes.forget_connection(a)
    assert len(routes) == 1


def test_counts_follow_sessions_coming_and_going() -> None:
    registry = SessionRegistry()
    a, b = FakeConnection("10.0.0.1"), FakeConnection("10.0.0.2")
    sessions = [player(a, 0), player(a, 0), player(b, 0)]
    for s in sessions:
        registry.add(s)
    registry.add(sessions[0])  # adding twice counts once
    assert (registry.of_client("10.0.0.1"), registry.of_client("10.0.0.2"), registry.on_path("a.mp4")) == (
        2,
        1,
        3,
    )
    registry.pop(sessions[0].id)
    registry.pop(sessions[0].id)
    assert (registry.of_client("10.0.0.1"), registry.on_path("a.mp4"), registry.publishers()) == (1, 2, 0)
