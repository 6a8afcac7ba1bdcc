"""Waiting on data, not on the clock: poll a condition until it holds or a generous deadline passes.

The deadline only bounds a failing test; a passing one returns as soon as the data is there, so
the tests neither sleep longer than needed on a fast machine nor fail on a slow one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], what: str, timeout: float = 20, interval: float = 0.05) -> T:
    """``condition()``'s first truthy value; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        time.sleep(interval)
    return value


async def until(condition: Callable[[], T], what: str, timeout: float = 20, interval: float = 0.02) -> T:
    """``wait_until`` for a coroutine: the event loop keeps running (clients keep reading) meanwhile."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        await asyncio.sleep(interval)
    return value
