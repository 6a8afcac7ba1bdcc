"""Named, bounded thread pools for blocking work, one per kind.

The loop's default executor is shared by everything that calls ``run_in_executor(None, ...)``:
six HTTP remuxes or slow probes there made every RTSP PLAY wait. Each kind of blocking work gets
its own small pool here, so one kind can only ever queue behind itself.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

# workers per pool: remux steps are short (they park when the client is slow), probes open files
SIZES: dict[str, int] = {"remux": 4, "probe": 2, "hls": 4}  # hls: segments made on request

_pools: dict[str, ThreadPoolExecutor] = {}
_lock = threading.Lock()


def pool(name: str) -> ThreadPoolExecutor:
    """The pool for ``name`` (one of ``SIZES``), made on first use."""
    with _lock:
        executor = _pools.get(name)
        if executor is None:
            executor = ThreadPoolExecutor(SIZES[name], thread_name_prefix=f"streamd-{name}")
            _pools[name] = executor
        return executor


async def run(name: str, fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` in the ``name`` pool."""
    return await asyncio.get_running_loop().run_in_executor(pool(name), fn, *args)
