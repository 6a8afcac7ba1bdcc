"""Multicast with worker processes, without sockets: the parent's group table, and two workers'
multicast services talking to it through in-memory channels (one sends, the other mirrors)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiortc.rtp import RtcpPacket
from hypothesis import given, settings
from hypothesis import strategies as st

from streamd.live.hub import LivePath
from streamd.live.multicast import MulticastService
from streamd.live.multicast_groups import MulticastRange, PoolExhausted
from streamd.rtsp.errors import RtspError
from streamd.rtsp.headers import parse_transport
from streamd.workers.multicast_link import ChannelGroups
from streamd.workers.multicast_table import GroupTable, ParentGroups
from streamd.workers.ownership import OwnerTable
from tests.unit.test_multicast import make_live


def spec(ports: tuple[int, int] = (40000, 40099)) -> MulticastRange:
    return MulticastRange.parse("239.255.42.0/28", ports, 16)


# --- the parent's table ----------------------------------------------------------------------


def test_one_group_per_path_for_every_worker_released_by_the_last() -> None:
    table = GroupTable(spec())
    a = table.hold(0, "live/a", [0, 1], source=True)
    assert table.hold(1, "live/a", [0, 1], source=False) == a, "every worker gets the path's group"
    b = table.hold(1, "live/b", [0, 1], source=True)
    assert b.group != a.group and not set(a.ports.values()) & set(b.ports.values())
    table.report(0, "live/a", 0, 0, held=False)
    assert "live/a" in table.entries, "worker 1 still holds it"
    table.report(1, "live/a", 0, 0, held=False)
    assert "live/a" not in table.entries and table.pool.get("live/a") is None
    assert table.hold(2, "live/a", [0, 1], source=True) == a, "the same group again (hashed first choice)"


def test_the_sender_is_the_publisher_s_worker_else_the_first_with_a_source() -> None:
    table = GroupTable(spec())
    table.hold(1, "live/a", [0], source=False)  # a relay of a sibling's path
    assert table.sender("live/a", owner=None) is None
    assert table.sender("live/a", owner=2) == 2
    table.hold(3, "live/a", [0], source=True)
    table.hold(0, "live/a", [0], source=True)
    assert table.sender("live/a", owner=None) == 3, "the first worker with a source of its own"
    table.report(3, "live/a", 0, 0, held=False)
    assert table.sender("live/a", owner=None) == 0


def test_the_sender_is_told_what_the_other_workers_play() -> None:
    table = GroupTable(spec())
    table.hold(0, "live/a", [0], source=True)
    table.hold(1, "live/a", [0], source=False)
    assert table.demand("live/a", owner=0) is None, "nothing to tell yet"
    table.report(1, "live/a", 0, 1, held=True)
    assert table.demand("live/a", owner=0) == (0, 0, 1)
    table.report(1, "live/a", 1, 1, held=True)
    table.report(0, "live/a", 5, 5, held=True)  # its own sessions are its own business
    assert table.demand("live/a", owner=0) == (0, 1, 1)
    assert table.demand("live/a", owner=0) is None, "told once"
    table.hold(2, "live/a", [0], source=False)
    table.report(2, "live/a", 2, 2, held=True)
    assert table.demand("live/a", owner=0) == (0, 3, 3)


def test_a_dead_worker_s_holds_are_released() -> None:
    table = GroupTable(spec())
    table.hold(0, "live/a", [0, 1], source=True)
    table.hold(1, "live/a", [0, 1], source=False)
    table.report(1, "live/a", 1, 1, held=True)
    table.hold(1, "live/b", [0], source=True)
    assert table.demand("live/a", owner=0) == (0, 1, 1)
    held, orphans = table.release_worker(1)
    assert sorted(held) == ["live/a", "live/b"] and orphans == {}, "worker 1 sent nothing others mirror"
    assert "live/b" not in table.entries and table.pool.get("live/b") is None
    assert table.demand("live/a", owner=0) == (0, 0, 0), "the sender learns nobody plays elsewhere"
    assert table.release_worker(0) == (["live/a"], {}) and len(table) == 0 and len(table.pool) == 0


def test_a_dead_sender_s_mirrors_are_named() -> None:
    table = GroupTable(spec())
    table.hold(0, "live/a", [0], source=True)
    table.hold(1, "live/a", [0], source=False)
    table.hold(2, "live/a", [0], source=False)
    assert table.release_worker(0) == (["live/a"], {"live/a": [1, 2]})


def test_a_wider_path_cannot_take_a_group_others_hold() -> None:
    table = GroupTable(spec())
    table.hold(0, "live/a", [0], source=True)
    with pytest.raises(PoolExhausted):
        table.hold(1, "live/a", [0, 1], source=True)
    grown = table.hold(0, "live/a", [0, 1], source=True)  # its only holder: grown
    assert sorted(grown.ports) == [0, 1]


def test_an_exhausted_range() -> None:
    table = GroupTable(spec((40000, 40003)))  # two port pairs
    table.hold(0, "live/a", [0, 1], source=True)
    with pytest.raises(PoolExhausted):
        table.hold(1, "live/b", [0], source=True)


@settings(max_examples=150)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["hold", "drop", "die"]),
            st.integers(0, 2),  # worker
            st.sampled_from(["p0", "p1", "p2", "p3", "p4"]),
            st.integers(1, 2),  # tracks
        ),
        max_size=40,
    )
)
def test_groups_and_ports_are_never_shared(operations: list[tuple[str, int, str, int]]) -> None:
    table = GroupTable(spec((40000, 40011)))
    for op, worker, path, tracks in operations:
        if op == "hold":
            try:
                allocation = table.hold(worker, path, list(range(tracks)), source=worker == 0)
            except PoolExhausted:
                continue
            assert allocation == table.entries[path].allocation
        elif op == "drop":  # (a report that it holds nothing)
            table.report(worker, path, 0, 0, held=False)
        else:
            table.release_worker(worker)
        groups = [e.allocation.group for e in table.entries.values()]
        ports = [p for e in table.entries.values() for p in e.allocation.ports.values()]
        assert len(groups) == len(set(groups)) and len(ports) == len(set(ports))
        assert all(e.holders for e in table.entries.values()), "a group nobody holds is released"
        assert len(table.pool) == len(table.entries)


# --- two workers through the parent, in memory ---------------------------------------------------


class FakeSockets:
    """GroupSockets without sockets."""

    def __init__(self, *args: Any) -> None:
        self.dropped = 0
        self.sent: list[bytes] = []

    def open(self) -> None: ...

    def send_rtp(self, packet: bytes) -> None:
        self.sent.append(packet)

    def send_rtcp(self, packet: bytes) -> None:
        self.sent.append(packet)

    def close(self) -> None: ...


class Wire:
    """One worker's channel to the parent, and the parent's to it: calls, in order."""

    def __init__(self, parent: ParentGroups, index: int) -> None:
        self.parent, self.index = parent, index
        self.worker: ChannelGroups | None = None

    async def request(self, op: str, timeout: float = 0, **args: Any) -> Any:
        return await self.parent.handle(self.index, {"op": op, **args})

    def send(self, message: dict[str, Any]) -> None:
        asyncio.get_running_loop().call_soon(
            lambda: asyncio.ensure_future(self.parent.handle(self.index, message))
        )


class ToWorker:
    def __init__(self, worker: ChannelGroups) -> None:
        self.worker = worker

    async def request(self, op: str, timeout: float = 0, **args: Any) -> Any:
        return self.worker.handle({"op": op, **args})

    def send(self, message: dict[str, Any]) -> None:
        self.worker.handle(message)


def two_workers(
    encrypted: bool = False, always: bool = False
) -> tuple[ParentGroups, OwnerTable, list[MulticastService], list]:
    owners = OwnerTable()
    to_workers: dict[int, Any] = {}
    parent = ParentGroups(spec(), owners, lambda: to_workers)
    services, lives = [], []
    for index in (0, 1):
        mc = MulticastService(
            spec(), "127.0.0.1", lambda p: always, "host", encrypted=lambda p, e=encrypted: e
        )
        live = make_live()
        relayed = index == 1  # worker 1 relays worker 0's publisher
        link = ChannelGroups(index, Wire(parent, index), mc, {"live/cam": live}, lambda _l, r=relayed: r)  # type: ignore[arg-type]
        link.install()
        to_workers[index] = ToWorker(link)
        services.append(mc)
        lives.append(live)
    owners.claim("live/cam", 0, "publisher")
    return parent, owners, services, lives


async def setup(mc: MulticastService, live: LivePath, session: str, track: int = 0) -> Any:
    await mc.prepare(live)
    reply, sink = mc.setup(live, track, session, "10.0.0.5", parse_transport("RTP/AVP;multicast")[0])
    await settle()
    return reply, sink


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.fixture(autouse=True)
def _no_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("streamd.live.multicast.GroupSockets", FakeSockets)


def test_readers_on_two_workers_get_one_group_from_one_sender() -> None:
    async def scenario() -> None:
        parent, _, (a, b), (live_a, live_b) = two_workers()
        reply_b, sink_b = await setup(b, live_b, "sb")
        reply_a, sink_a = await setup(a, live_a, "sa")
        assert reply_a == reply_b, "same group, ports and SSRC on both workers"
        assert sink_b.sender.mirror and not sink_a.sender.mirror
        sender = a.senders["live/cam"]
        assert sender.remote_setups == 1 and not sender.running
        b.play("sb")
        await settle()
        assert sender.running and sender.remote_playing == 1, "worker 1's reader keeps worker 0 sending"
        assert b.senders["live/cam"].running and live_a.readers == {sender} and not live_b.readers
        assert b.snapshot() == [] and [g["path"] for g in a.snapshot()] == ["live/cam"]
        b.pause("sb")
        await settle()
        assert not sender.running, "nobody plays anywhere: BYE"
        b.leave("sb")
        await settle()
        assert "live/cam" not in b.senders and sender.remote_setups == 0
        assert set(parent.table.entries["live/cam"].holders) == {0}
        a.leave("sa")
        a.path_offline(live_a)
        await settle()
        assert len(parent.table) == 0, "the group is given back when no worker holds it"

    asyncio.run(scenario())


def test_the_sending_worker_s_key_reaches_the_mirror() -> None:
    async def scenario() -> None:
        _, _, (a, b), (_, live_b) = two_workers(encrypted=True)
        reply_b, sink_b = await setup(b, live_b, "sb")
        key = a.senders["live/cam"].group_key()
        assert key is not None and sink_b.sender.group_key() == key and reply_b.profile == "RTP/SAVP"

    asyncio.run(scenario())


def test_a_dead_reader_worker_no_longer_keeps_the_send() -> None:
    async def scenario() -> None:
        parent, _, (a, b), (_, live_b) = two_workers()
        await setup(b, live_b, "sb")
        b.play("sb")
        await settle()
        sender = a.senders["live/cam"]
        assert sender.running
        parent.worker_gone(1)
        await settle()
        assert not sender.running and sender.remote_setups == 0

    asyncio.run(scenario())


def test_no_publisher_anywhere_is_404_and_holds_nothing() -> None:
    async def scenario() -> None:
        parent, owners, (_, b), (_, live_b) = two_workers()
        owners.release("live/cam", 0, "publisher")
        with pytest.raises(RtspError) as refused:
            await b.prepare(live_b)
        assert refused.value.status == 404 and len(parent.table) == 0

    asyncio.run(scenario())


def test_every_worker_s_http_side_shows_every_group() -> None:
    """``/api/v1/multicast`` and ``/sdp/<path>?multicast=1`` from the worker that does not send."""
    from streamd.live.live_presentation import live_presentation
    from streamd.workers.multicast_view import WholeMulticast, multicast_state

    async def scenario() -> None:
        _, _, (a, b), (live_a, live_b) = two_workers(encrypted=True)
        await setup(b, live_b, "sb")
        b.play("sb")
        await settle()
        whole = type("Whole", (), {"_siblings": [{"multicast": multicast_state(a)}]})()
        shown = WholeMulticast(b, whole)
        (group,) = shown.snapshot()
        assert group["path"] == "live/cam" and group["sending"] and group["rtsp_members"] == 1
        presentation = live_presentation(live_a)
        unicast = presentation.sdp("192.0.2.1")
        assert shown.sdp("live/cam", presentation, unicast, secure=True) == a.sdp(
            "live/cam", presentation, unicast, secure=True
        ), "the same SDP (group, ports, key) from either worker"
        with pytest.raises(RtspError) as refused:
            shown.sdp("live/cam", presentation, unicast, secure=False)
        assert refused.value.status == 403
        assert shown.sdp("live/other", presentation, unicast) is None and not shown.advertised("live/cam")

    asyncio.run(scenario())


def test_when_the_sending_worker_dies_its_mirror_says_bye_for_it() -> None:
    async def scenario() -> None:
        parent, _, (_, b), (_, live_b) = two_workers()
        _, sink = await setup(b, live_b, "sb")
        b.play("sb")
        await settle()
        mirror = sink.sender
        sockets = [t.sockets for t in mirror.tracks.values()]
        assert mirror.running and all(isinstance(s, FakeSockets) for s in sockets)
        parent.worker_gone(0)
        await settle()
        assert not mirror.running
        for track, sent in zip(mirror.tracks.values(), sockets, strict=True):
            (bye,) = sent.sent  # type: ignore[union-attr]
            packets = RtcpPacket.parse(bye)
            assert [type(p).__name__ for p in packets] == ["RtcpRrPacket", "RtcpByePacket"]
            assert packets[1].sources == [track.stream.ssrc]

    asyncio.run(scenario())


def test_an_always_on_path_is_sent_by_its_publisher_s_worker_while_online() -> None:
    async def scenario() -> None:
        parent, _, (a, b), (live_a, live_b) = two_workers(always=True)
        a.path_online(live_a)
        await settle()
        sender = a.senders["live/cam"]
        assert sender.running and sender.always and not sender.mirror
        assert a.advertised("live/cam") and set(parent.table.entries["live/cam"].holders) == {0}
        reply, sink = await setup(b, live_b, "sb")
        assert sink.sender.mirror and reply.destination == sender.allocation.group
        a.path_offline(live_a)
        await settle()
        assert not sender.running and set(parent.table.entries["live/cam"].holders) == {1}
        b.leave("sb")
        await settle()
        assert len(parent.table) == 0, "offline, nobody set up: the group is given back"

    asyncio.run(scenario())
