"""A browser that leaves while a remux step runs (seconds on a loaded machine) frees its share of
the /mp4 admissions at once, not when the step ends: a player that reloads or seeks straight
away is not refused for the remux it abandoned. The step itself still runs to its end before
the remux is closed (a generator cannot be closed while a thread runs it)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from streamd.http import fmp4


class BlockedRemux:
    """A remux whose step waits for ``release``; records whether it was closed."""

    def __init__(self) -> None:
        self.done = False
        self.release = threading.Event()
        self.closed = False

    def step(self) -> bytes:
        assert self.release.wait(30), "the test never released the step"
        return b"x" * 10

    def close(self) -> None:
        self.closed = self.done = True


class Response:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    async def write(self, data: bytes) -> None:
        self.written.append(data)

    async def write_eof(self) -> None:
        raise AssertionError("a client that left gets no clean end")


def test_the_client_leaving_mid_step_frees_its_share_before_the_step_ends() -> None:
    remux, response, events = BlockedRemux(), Response(), []
    client_gone = asyncio.Event()

    async def run() -> None:
        task = asyncio.ensure_future(
            fmp4.stream_remux(
                remux,  # type: ignore[arg-type]
                response,  # type: ignore[arg-type]
                gone=client_gone.is_set,
                left=lambda: events.append("left"),
            )
        )
        await asyncio.sleep(0.05)
        client_gone.set()
        while not events:  # within a check interval, while the step still runs
            await asyncio.sleep(0.01)
        assert not task.done() and not remux.closed
        remux.release.set()
        with pytest.raises(fmp4.ClientGone):
            await task

    asyncio.run(asyncio.wait_for(run(), 30))
    assert events == ["left"] and remux.closed and response.written == []


def test_a_client_that_stays_is_never_asked_to_leave() -> None:
    remux, response = BlockedRemux(), Response()
    remux.release.set()
    steps = iter([b"a", b"b"])

    def step() -> bytes:
        data = next(steps, None)
        if data is None:
            remux.done = True
            return b""
        return data

    remux.step = step  # type: ignore[method-assign]

    async def eof() -> None:
        response.written.append(b"<eof>")

    response.write_eof = eof  # type: ignore[method-assign]
    asyncio.run(fmp4.stream_remux(remux, response, left=lambda: pytest.fail("left")))  # type: ignore[arg-type]
    assert response.written == [b"a", b"b", b"<eof>"]
