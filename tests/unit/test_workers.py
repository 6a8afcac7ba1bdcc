"""Worker processes' parts without processes: the channel's framing and its requests over a real
socket pair, the owner table, the admin state replayed to a restarted worker, the settings."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamd.config import ConfigError, ServerConfig, load_config
from streamd.live.multicast import MulticastService
from streamd.workers.channel import CHUNK, Channel, ChannelError, Framing
from streamd.workers.ownership import LocalOwners, Owner, OwnerTable
from streamd.workers.supervisor import AdminState
from streamd.workers.worker import Identity

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=10), JSON, max_size=8))
def test_framing_round_trips_any_message(message: dict) -> None:
    framing = Framing()
    results = [framing.feed(packet) for packet in Framing.encode(message)]
    assert results[:-1] == [None] * (len(results) - 1)
    assert results[-1] == message


def test_large_messages_are_chunked_and_bounded() -> None:
    message = {"rows": ["x" * 1000] * 500}
    packets = Framing.encode(message)
    assert len(packets) > 1 and all(len(p) <= CHUNK + 1 for p in packets)
    framing = Framing(max_message=100_000)
    with pytest.raises(ValueError, match="larger than"):
        for packet in packets:
            framing.feed(packet)


@given(st.binary(max_size=200))
def test_framing_refuses_what_is_not_a_message(packet: bytes) -> None:
    framing = Framing()
    try:
        result = framing.feed(packet)
    except ValueError:
        return
    assert result is None or isinstance(result, dict)


def test_owner_table_gives_a_path_to_one_worker_at_a_time() -> None:
    table = OwnerTable(max_paths=2)
    assert table.claim("live/a", 0, "s1") is None
    assert table.claim("live/a", 0, "s1") is None  # the holder again: still its
    assert table.claim("live/a", 1, "s2") == Owner(0, "s1")
    assert not table.release("live/a", 1, "s2")  # only the holder releases
    assert table.release("live/a", 0, "s1")
    assert table.claim("live/a", 1, "s2") is None
    assert table.claim("live/b", 1, "s3") is None
    assert table.claim("live/c", 0, "s4") == Owner(-1, "table full")
    assert sorted(table.release_worker(1)) == ["live/a", "live/b"]  # it died
    assert len(table) == 0 and table.owner("live/a") is None


def test_one_process_owners_grant_everything() -> None:
    owners = LocalOwners()
    assert asyncio.run(owners.claim("live/a", "s")) is None
    assert asyncio.run(owners.owner("live/a")) is None


def test_admin_state_replays_what_is_in_force() -> None:
    state = AdminState()
    state.note({"kind": "move", "path": "a", "to": ["rtsp://x/a"]})
    state.note({"kind": "move", "path": "b", "to": ["rtsp://x/b"]})
    state.note({"kind": "move", "path": "b", "to": []})  # undone
    state.note({"kind": "drain", "to": [], "grace": 5})
    assert state.replay() == [
        {"kind": "move", "path": "a", "to": ["rtsp://x/a"]},
        {"kind": "drain", "to": [], "grace": 5},
    ]
    state.note({"kind": "stop_draining"})
    assert state.replay() == [{"kind": "move", "path": "a", "to": ["rtsp://x/a"]}]


def test_workers_setting() -> None:
    assert ServerConfig().workers == 1
    assert load_config(None, {"workers": "3"}).workers == 3
    assert ServerConfig(workers="auto").workers == len(os.sched_getaffinity(0))
    for wrong in (0, -1, "many", True, 2000):
        with pytest.raises(ConfigError, match="workers"):
            ServerConfig(workers=wrong)


def test_each_worker_gets_its_own_rtp_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMD_WORKER", "3,4,7,/run/x")
    identity = Identity.from_env()
    assert identity == Identity(3, 4, 7, Path("/run/x"))
    assert identity.config(ServerConfig(rtp_port=8000)).rtp_port == 8006
    monkeypatch.delenv("STREAMD_WORKER")
    assert Identity.from_env() is None


def test_channel_requests_both_ways_with_a_socket_passed_along() -> None:
    async def main() -> None:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        passed: list[bytes] = []

        async def on_a(message: dict, fds: list[int]) -> object:
            for fd in fds:
                with socket.socket(fileno=fd) as sock:
                    passed.append(sock.recv(100))
            if message["op"] == "fail":
                raise ChannelError("no")
            return {"echo": message.get("n"), "big": "y" * 200_000}

        async def on_b(message: dict, fds: list[int]) -> object:
            return message["op"]

        left, right = Channel(a, on_a, "a"), Channel(b, on_b, "b")
        x, y = socket.socketpair()
        y.send(b"hello")
        answer = await right.request("echo", fds=[x.fileno()], n=5)
        x.close()
        assert answer["echo"] == 5 and len(answer["big"]) == 200_000
        assert passed == [b"hello"]
        assert await left.request("ping") == "ping"
        with pytest.raises(ChannelError, match="no"):
            await right.request("fail")
        left.close()
        await asyncio.wait_for(right.closed.wait(), 5)  # the peer saw its end go
        with pytest.raises(ChannelError):
            await right.request("echo")
        y.close()

    asyncio.run(main())


class _Relocator:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def drain(self, targets: list[str], grace: float) -> int:
        self.calls.append(("drain", list(targets), grace))
        return 1

    def stop_draining(self) -> None:
        self.calls.append(("stop",))

    def move_path(self, path: str, targets: list[str]) -> int:
        self.calls.append(("move", path, list(targets)))
        return 2

    def status(self) -> dict[str, object]:
        return {"draining": False, "sessions": 0}


class _Sessions(dict):
    pass


class _Rtsp:
    """What the whole-server view reads of a worker's server (no sessions of its own here)."""

    def __init__(self) -> None:
        self.sessions = _Sessions()
        self.relocator = _Relocator()
        self.paths = type("P", (), {"siblings": None})()
        self.http_hand_over = None
        self.recordings = type("R", (), {"is_recording": lambda self, path: path == "live/here"})()
        self.multicast = MulticastService(None, "0.0.0.0", lambda path: False, "host")

    def live_paths(self) -> list[str]:
        return ["live/here"]

    def viewers(self, path: str) -> int:
        return 3 if path == "live/here" else 0

    def auth_metrics(self) -> dict[str, int]:
        return {"auth_failures": 1}


def test_the_whole_server_is_this_worker_plus_what_the_siblings_said() -> None:
    from streamd.workers.view import WholeServer, apply

    sibling = {
        "worker": 1,
        "private": [
            {"id": "a", "path": "f.mp4", "worker": 1},
            {"id": "b", "path": "live/there", "worker": 1},
        ],
        "public": [{"path": "f.mp4", "worker": 1}, {"path": "live/there", "worker": 1}],
        "live": {"live/there": 2, "live/here": 1},
        "auth": {"auth_failures": 4, "auth_blocks": 1},
        "tunnels": 2,
        "recording": ["live/there"],
    }
    sent: list[dict] = []

    async def gather() -> list[dict]:
        return [sibling]

    rtsp = _Rtsp()
    whole = WholeServer(rtsp, 0, gather, sent.append)
    asyncio.run(whole.refresh())
    assert whole.session_count() == 2
    assert [r["id"] for r in whole.snapshot(private=True, offset=1, limit=5)] == ["b"]
    assert all("id" not in r for r in whole.snapshot(private=False))
    assert whole.live_paths() == ["live/here", "live/there"]
    assert whole.viewers("live/here") == 4 and whole.viewers("live/there") == 2
    assert whole.auth_metrics() == {"auth_failures": 5, "auth_blocks": 1}
    assert whole.tunnel_count() == 2
    assert whole._mine()["recording"] == ["live/here"]  # each path marked where it is recorded
    assert whole.recordings.is_recording("live/here") and whole.recordings.is_recording("live/there")
    assert not whole.recordings.is_recording("live/other")
    whole.http_hand_over = "set"  # attributes the HTTP side sets go to the server itself
    assert rtsp.http_hand_over == "set"
    # admin actions: here, and to every sibling
    assert whole.relocator.drain(["rtsp://b"], 5.0) == 1
    assert whole.relocator.move_path("x", ["rtsp://c/x"]) == 2
    whole.relocator.stop_draining()
    assert sent == [
        {"kind": "drain", "to": ["rtsp://b"], "grace": 5.0},
        {"kind": "move", "path": "x", "to": ["rtsp://c/x"]},
        {"kind": "stop_draining"},
    ]
    assert whole.relocator.status()["sessions"] == 2
    # ... and what a sibling does with them
    other = _Relocator()
    assert [apply(other, action) for action in sent] == [1, 2, 0]
    assert other.calls == [("drain", ["rtsp://b"], 5.0), ("move", "x", ["rtsp://c/x"]), ("stop",)]


def test_workers_share_digest_nonces_but_each_catches_replays() -> None:
    from streamd.auth.nonces import NonceBook, NonceState

    secret = os.urandom(32)
    first, second = NonceBook(secret=secret, adopt=True), NonceBook(secret=secret, adopt=True)
    nonce = first.issue("10.0.0.1", 100.0)
    assert second.check(nonce, "10.0.0.1", 101.0, 1) is NonceState.FRESH  # answered on another worker
    assert second.check(nonce, "10.0.0.1", 102.0, 1) is NonceState.REPLAYED
    assert second.check(nonce, "10.0.0.2", 102.0, 2) is NonceState.FOREIGN  # bound to its client
    assert second.check(nonce, "10.0.0.1", 100.0 + 301, 2) is NonceState.STALE  # expired
    assert (
        NonceBook(secret=os.urandom(32), adopt=True).check(nonce, "10.0.0.1", 101.0, 1) is NonceState.FOREIGN
    )
    assert NonceBook(secret=secret).check(nonce, "10.0.0.1", 101.0, 1) is NonceState.STALE  # one process
