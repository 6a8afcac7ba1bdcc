"""One send scheduler for every on-demand session on the event loop.

A session that slept in its own task until each access unit was due cost a timer handle and a
task step per access unit (about 70 a second for H.264 + AAC), which made the event loop, not
the sending, the limit at a few hundred sessions. Here each session (a ``Paced``) only says when
it next needs the loop; one timer wakes at the earliest such time and pumps every session due
within ``SEND_SLACK`` of it, so wake-ups are shared by all sessions instead of multiplied by them.

With ``fine`` (precise pacing) nothing leaves before its time and little after it: the loop's
timers count whole milliseconds under uvloop and fire anywhere in the millisecond (0.85 ms
median between consecutive lateness values measured here), so the timer is armed ``FINE_LEAD``
early and the wake-up sleeps the rest on the monotonic clock (the loop's own clock, finer). The
loop is blocked for the rest (at most ``2 * FINE_LEAD``, when the timer fired early in its
millisecond) per wake-up, the price of the mode (0.02-0.04 ms median).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Callable
from typing import Protocol
from weakref import WeakKeyDictionary

log = logging.getLogger(__name__)

SEND_SLACK = 0.002  # seconds: what is due this soon is sent in the same wake-up
FINE_LEAD = 0.0015  # fine pacing: the timer fires this early, the wake-up sleeps the rest


class Paced(Protocol):
    def pump(self, now: float, horizon: float) -> float | None:
        """Send everything due up to ``horizon`` (loop time); return when to be pumped next,
        or None to be left alone until ``Pacer.schedule`` is called again."""
        ...


class Pacer:
    """A heap of (due, token, client); a client's latest token is the only live entry."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        slack: float = SEND_SLACK,
        *,
        fine: bool = False,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._loop = loop
        self.slack = slack
        self.fine = fine  # precise pacing: sub-millisecond due times (see the module's docstring)
        self._clock, self._sleep = clock, sleep
        self._heap: list[tuple[float, int, Paced]] = []
        self._tokens: dict[Paced, int] = {}
        self._count = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._running = False
        self.wakeups = 0  # for tests and profiling: how often the timer fired

    def __len__(self) -> int:
        """Clients scheduled now."""
        return len(self._tokens)

    def schedule(self, client: Paced, at: float) -> None:
        """Pump ``client`` at loop time ``at`` (replacing any earlier request of it)."""
        token = next(self._count)
        self._tokens[client] = token
        heapq.heappush(self._heap, (at, token, client))
        if not self._running and at < self._timer_at:
            self._arm(at)
        if len(self._heap) > 2 * len(self._tokens) + 256:
            self._compact()

    def cancel(self, client: Paced) -> None:
        """Forget ``client`` until it is scheduled again (its heap entry goes stale)."""
        self._tokens.pop(client, None)

    def scheduled(self, client: Paced) -> bool:
        return client in self._tokens

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_at(at - FINE_LEAD if self.fine else at, self._run)

    def _now(self) -> float:
        """The time of this wake-up: the loop's clock, or with ``fine`` the monotonic clock (the
        same origin, finer) after sleeping until the earliest due time if that is near."""
        if not self.fine:
            return self._loop.time()
        now = self._clock()
        heap, tokens = self._heap, self._tokens
        while heap and tokens.get(heap[0][2]) != heap[0][1]:
            heapq.heappop(heap)
        if heap and 0 < heap[0][0] - now <= 2 * FINE_LEAD:
            self._sleep(heap[0][0] - now)
            now = self._clock()
        return now

    def _run(self) -> None:
        self._timer, self._timer_at = None, float("inf")
        self.wakeups += 1
        now = self._now()
        horizon = now + self.slack
        heap, tokens = self._heap, self._tokens
        again: list[tuple[float, Paced]] = []
        self._running = True
        try:
            while heap and heap[0][0] <= horizon:
                _, token, client = heapq.heappop(heap)
                if tokens.get(client) != token:
                    continue  # cancelled or rescheduled since
                del tokens[client]
                try:
                    due = client.pump(now, horizon)
                except Exception:  # one broken session never stops the others
                    log.exception("pacing %r failed", client)
                    continue
                if due is not None and client not in tokens:
                    again.append((due, client))
        finally:
            self._running = False
            for due, client in again:  # after the sweep: every client is pumped once per wake-up
                if client not in tokens:
                    token = next(self._count)
                    tokens[client] = token
                    heapq.heappush(heap, (max(due, horizon), token, client))
            while heap and tokens.get(heap[0][2]) != heap[0][1]:
                heapq.heappop(heap)  # stale entries at the top would only cause empty wake-ups
            if heap:
                self._arm(heap[0][0])

    def _compact(self) -> None:
        tokens = self._tokens
        self._heap = [entry for entry in self._heap if tokens.get(entry[2]) == entry[1]]
        heapq.heapify(self._heap)


_pacers: WeakKeyDictionary[asyncio.AbstractEventLoop, Pacer] = WeakKeyDictionary()


def loop_pacer(slack: float | None = None, *, fine: bool | None = None) -> Pacer:
    """The running loop's pacer (one per loop, made on first use); ``slack`` and ``fine`` set it."""
    loop = asyncio.get_running_loop()
    pacer = _pacers.get(loop)
    if pacer is None:
        pacer = _pacers[loop] = Pacer(loop)
    if slack is not None:
        pacer.slack = slack
    if fine is not None:
        pacer.fine = fine
    return pacer
