"""Whole-server limits with worker processes (streamd.workers.limits): the parent's table of
slots, and a worker's side answering as a single server does."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streamd.rtsp.errors import RtspError
from streamd.rtsp.message import Request
from streamd.workers.limits import Cap, SlotTable, WorkerSlots


def test_the_parents_slot_table() -> None:
    """The parent's table: all or nothing over kinds, releases only by the worker that holds."""
    table = SlotTable({"sessions": Cap(2, 5, "max_sessions"), "publishers": Cap(1, 1, "max_publishers")})
    assert table.reserve(0, ["publishers", "sessions"], "a") is None
    assert table.reserve(1, ["publishers", "sessions"], "b") == (503, "1 publishers already (max_publishers)")
    assert table.totals["sessions"] == 1  # nothing taken by the refused reservation
    assert table.reserve(1, ["sessions"], "b") is None
    assert table.reserve(1, ["sessions"], "c")[0] == 503  # type: ignore[index]
    table.release(1, ["sessions"], "a")  # not worker 1's: ignored
    assert table.totals["sessions"] == 2
    assert table.release_worker(0) == 2
    assert table.reserve(1, ["publishers", "sessions"], "c") is None


class _Channel:
    def __init__(self, table: SlotTable, worker: int) -> None:
        self.table, self.worker = table, worker

    async def request(self, op: str, **args: Any) -> Any:
        refused = self.table.reserve(self.worker, args["kinds"], args["client"])
        return None if refused is None else list(refused)

    def send(self, message: dict[str, Any]) -> None:
        self.table.release(self.worker, message["kinds"], message["client"])


class _Client:
    def __init__(self, host: str = "10.0.0.1") -> None:
        self.peer = (host, 1000)
        self.sessions: set[str] = set()


class _Session:
    def __init__(self, sid: str, host: str) -> None:
        self.id, self.client_host = sid, host


class _Registry(dict):  # type: ignore[type-arg]
    removed: Any = None

    def pop(self, sid: str) -> Any:  # type: ignore[override]
        session = super().pop(sid)
        self.removed(session)
        return session


def test_a_worker_holds_a_slot_per_session_made_and_releases_it_when_the_session_goes() -> None:
    table = SlotTable({"sessions": Cap(2, 2, "max_sessions"), "publishers": Cap(1, 1, "max_publishers")})
    registry = _Registry()
    made = iter(["s1", "s2", "s3"])

    async def setup(client: Any, request: Request) -> Any:
        if request.uri.endswith("bad"):
            raise RtspError(461, "no transport")
        if "Session" in request.headers:
            return "reply", None
        sid = next(made)
        registry[sid] = _Session(sid, client.peer[0])
        client.sessions.add(sid)
        return "reply", None

    rtsp = type("R", (), {})()
    rtsp.dispatcher = type("D", (), {"_handlers": {"SETUP": setup, "ANNOUNCE": setup}})()
    rtsp.sessions = registry
    slots = WorkerSlots(_Channel(table, 0))  # type: ignore[arg-type]
    slots.install(rtsp)
    handler = rtsp.dispatcher._handlers["SETUP"]
    client = _Client()

    def request(uri: str, **headers: str) -> Request:
        return Request("SETUP", uri, "RTSP/1.0", {"CSeq": "1", **headers})

    async def scenario() -> None:
        with pytest.raises(RtspError):
            await handler(client, request("rtsp://h/bad"))
        assert table.totals["sessions"] == 0  # the failed SETUP gave its slot back
        await handler(client, request("rtsp://h/a"))
        await handler(client, request("rtsp://h/a", Session="s1"))  # a track more: no new slot
        assert table.totals["sessions"] == 1
        await handler(client, request("rtsp://h/b"))
        with pytest.raises(RtspError) as refused:
            await handler(client, request("rtsp://h/c"))
        assert refused.value.status == 503
        registry.pop("s1")
        assert table.totals["sessions"] == 1
        await handler(_Client("streamd-worker"), request("rtsp://h/d"))  # a sibling's relay: not counted
        assert table.totals["sessions"] == 1

    asyncio.run(scenario())
