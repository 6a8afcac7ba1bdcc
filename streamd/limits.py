"""Limits an outsider could otherwise push without bound: counts per client and in total.

Sans-I/O: the shell asks before it takes on work and says when the work is done; nothing here
reads a clock it is not given or touches a socket.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from streamd.rtsp.errors import RtspError


class Admission:
    """At most ``total`` things at once, at most ``per_client`` of them for one client address."""

    def __init__(self, total: int, per_client: int, what: str = "requests") -> None:
        self.total = total
        self.per_client = per_client
        self.what = what
        self.counts: Counter[str] = Counter()

    @property
    def active(self) -> int:
        return self.counts.total()

    def refusal(self, client: str) -> str | None:
        """Why ``client`` may not start one more now, or None if it may."""
        if self.counts.total() >= self.total:
            return f"{self.total} {self.what} at once already; try again later"
        if self.counts[client] >= self.per_client:
            return f"{self.per_client} {self.what} at once from {client} already; finish one first"
        return None

    def admit(self, client: str) -> bool:
        """Count one more for ``client`` if the limits allow it."""
        if self.refusal(client) is not None:
            return False
        self.counts[client] += 1
        return True

    def release(self, client: str) -> None:
        self.counts[client] -= 1
        if self.counts[client] <= 0:
            del self.counts[client]

    @contextmanager
    def hold(self, client: str, status: int = 503) -> Iterator[Held]:
        """One admission for the ``with`` block; ``RtspError(status)`` with the reason if refused."""
        reason = self.refusal(client)
        if reason is not None:
            raise RtspError(status, reason)
        self.counts[client] += 1
        held = Held(self, client)
        try:
            yield held
        finally:
            self.release(held.key)


class Held:
    """One admission of an :class:`Admission`, counted under ``key`` until released."""

    def __init__(self, admission: Admission, key: str) -> None:
        self.admission = admission
        self.key = key

    def hand_over(self, key: str) -> None:
        """Count it under ``key`` from now on, still in the total: work its client left that is
        still finishing frees the client's share at once and the server's when it ends."""
        self.admission.release(self.key)
        self.admission.counts[key] += 1
        self.key = key


class WorkBudget:
    """At most ``rate`` units of work per second on average, ``burst`` at once (a token bucket).

    Sans-I/O: the caller says what ``now`` is (any monotonic clock, in seconds)."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = rate if burst is None else burst
        self._tokens = self.burst
        self._last: float | None = None

    def spend(self, cost: float, now: float) -> bool:
        """Take ``cost`` units; False when the budget is overdrawn (the work was already done:
        the caller stops the one who caused it)."""
        if self._last is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= cost
        return self._tokens >= 0


class HeadDeadline:
    """A request must arrive whole within ``timeout`` of its first byte, however it trickles.

    An idle timer that every byte resets lets a client hold a connection for days with a byte
    every few seconds. Fed, after each read, how many bytes of an unfinished message the parser
    holds and whether the read completed any message; ``due`` is when the unfinished message's
    time runs out (None: nothing unfinished). A completed message restarts the clock, so a
    stream of interleaved frames whose reads always end mid-frame is never cut.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.due: float | None = None

    def update(self, buffered: int, completed: bool, now: float) -> None:
        if buffered == 0:
            self.due = None
        elif self.due is None or completed:
            self.due = now + self.timeout

    def expired(self, now: float) -> bool:
        return self.due is not None and now >= self.due


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit (each client costs a descriptor or
    three); returns (soft, hard) as they are now. A refusal leaves the limit as it was."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft, hard
