"""The loop-wide pacer: who is pumped in a wake-up, rescheduling, cancelling, isolation."""

from __future__ import annotations

from streamd.pacer import Pacer


class FakeLoop:
    """Just enough of an event loop: a settable clock and the one timer the pacer keeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.timers: list[Timer] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback) -> Timer:  # type: ignore[no-untyped-def]
        timer = Timer(when, callback)
        self.timers.append(timer)
        return timer

    def armed(self) -> list[Timer]:
        return [t for t in self.timers if not t.cancelled]

    def run_until(self, when: float) -> None:
        """Fire the armed timers in time order up to ``when``, advancing the clock to each."""
        while True:
            due = sorted((t for t in self.armed() if t.when <= when), key=lambda t: t.when)
            if not due:
                self.now = max(self.now, when)
                return
            timer = due[0]
            timer.cancelled = True
            self.now = max(self.now, timer.when)
            timer.callback()


class Timer:
    def __init__(self, when: float, callback) -> None:  # type: ignore[no-untyped-def]
        self.when, self.callback, self.cancelled = when, callback, False

    def cancel(self) -> None:
        self.cancelled = True


class Client:
    """Records each pump and answers with the next due times it was given."""

    def __init__(self, name: str, dues: list[float | None] | None = None) -> None:
        self.name = name
        self.dues = list(dues or [])
        self.pumps: list[tuple[float, float]] = []

    def pump(self, now: float, horizon: float) -> float | None:
        self.pumps.append((now, horizon))
        return self.dues.pop(0) if self.dues else None


def make() -> tuple[FakeLoop, Pacer]:
    loop = FakeLoop()
    return loop, Pacer(loop, slack=0.002)  # type: ignore[arg-type]


def test_one_wakeup_serves_everyone_due_within_the_slack() -> None:
    loop, pacer = make()
    a, b, c = Client("a"), Client("b"), Client("c")
    pacer.schedule(a, 100.010)
    pacer.schedule(b, 100.011)  # within 2 ms of a: the same wake-up
    pacer.schedule(c, 100.020)
    assert [t.when for t in loop.armed()] == [100.010]
    loop.run_until(100.010)
    assert len(a.pumps) == len(b.pumps) == 1 and not c.pumps
    assert a.pumps[0] == (100.010, 100.012)
    assert [t.when for t in loop.armed()] == [100.020]  # re-armed for the next one
    loop.run_until(100.030)
    assert len(c.pumps) == 1
    assert pacer.wakeups == 2


def test_the_returned_time_reschedules_and_none_leaves_the_client_alone() -> None:
    loop, pacer = make()
    a = Client("a", [100.050, 100.100, None])
    pacer.schedule(a, 100.0)
    loop.run_until(101.0)
    assert [now for now, _ in a.pumps] == [100.0, 100.050, 100.100]
    assert not pacer.scheduled(a) and len(pacer) == 0
    pacer.schedule(a, 101.5)  # woken again from outside (a read came in)
    loop.run_until(102.0)
    assert a.pumps[-1][0] == 101.5


def test_a_new_request_replaces_the_old_and_cancel_forgets() -> None:
    loop, pacer = make()
    a, b = Client("a"), Client("b")
    pacer.schedule(a, 100.5)
    pacer.schedule(a, 100.2)  # earlier: re-arms the timer
    pacer.schedule(b, 100.3)
    pacer.cancel(b)
    loop.run_until(101.0)
    assert [now for now, _ in a.pumps] == [100.2]  # once, not again at 100.5
    assert not b.pumps


def test_a_client_asking_again_at_once_is_pumped_once_per_wakeup() -> None:
    loop, pacer = make()
    a = Client("a", [100.0, 100.0, None])  # keeps saying "now"
    pacer.schedule(a, 100.0)
    loop.run_until(100.0)
    assert len(a.pumps) == 1
    assert [t.when for t in loop.armed()] == [100.002]  # no busy loop: the end of the horizon
    loop.run_until(100.01)
    assert len(a.pumps) == 3


def test_one_failing_client_does_not_stop_the_others() -> None:
    loop, pacer = make()

    class Broken:
        def pump(self, now: float, horizon: float) -> float | None:
            raise RuntimeError("broken file")

    good = Client("good", [100.5])
    pacer.schedule(Broken(), 100.0)
    pacer.schedule(good, 100.0)
    loop.run_until(101.0)
    assert [now for now, _ in good.pumps] == [100.0, 100.5]


def test_scheduling_inside_a_pump_is_honoured() -> None:
    loop, pacer = make()
    other = Client("other")

    class Waker:
        def pump(self, now: float, horizon: float) -> float | None:
            pacer.schedule(other, now + 0.1)
            return None

    pacer.schedule(Waker(), 100.0)
    loop.run_until(100.2)
    assert [now for now, _ in other.pumps] == [100.1]


def test_stale_entries_are_compacted() -> None:
    loop, pacer = make()
    a = Client("a")
    for i in range(2000):
        pacer.schedule(a, 200.0 - i * 0.001)  # each replaces the last
    assert len(pacer._heap) < 600
    loop.run_until(300.0)
    assert len(a.pumps) == 1


def test_the_loop_pacer_takes_the_configured_slack() -> None:
    import asyncio

    from streamd.pacer import loop_pacer

    async def main() -> None:
        pacer = loop_pacer()
        assert loop_pacer(0.0) is pacer and pacer.slack == 0.0  # precise pacing: nothing early
        assert loop_pacer(0.003).slack == 0.003

    asyncio.run(main())


class FineClock:
    """The monotonic clock of a fine pacer: it reads the fake loop's time plus an offset (the loop's
    clock lags, as uvloop's whole milliseconds do), and sleeping moves the loop's time on."""

    def __init__(self, loop: FakeLoop, ahead: float = 0.0) -> None:
        self.loop, self.ahead = loop, ahead
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.loop.now + self.ahead

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.loop.now += seconds


def fine_pacer() -> tuple[FakeLoop, Pacer, FineClock]:
    from streamd.pacer import FINE_LEAD

    loop = FakeLoop()
    clock = FineClock(loop, ahead=0.0004)
    pacer = Pacer(loop, slack=0.0, fine=True, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]
    assert FINE_LEAD > 0.001  # more than uvloop's millisecond: the timer never fires late by rounding
    return loop, pacer, clock


def test_a_fine_pacer_arms_early_and_sleeps_to_the_due_time() -> None:
    from streamd.pacer import FINE_LEAD

    loop, pacer, clock = fine_pacer()
    a = Client("a", [100.0213333, None])
    pacer.schedule(a, 100.010)
    assert [t.when for t in loop.armed()] == [100.010 - FINE_LEAD]
    loop.run_until(100.1)
    assert [now for now, _ in a.pumps] == [100.010, 100.0213333]  # on time to the sub-millisecond
    assert all(now == horizon for now, horizon in a.pumps)  # nothing early: slack 0
    assert all(0 < s <= FINE_LEAD for s in clock.slept)


def test_a_fine_pacer_never_sleeps_long_nor_when_late() -> None:
    loop, pacer, clock = fine_pacer()
    a = Client("a")
    pacer.schedule(a, 100.010)
    loop.now = 100.012  # the loop was busy: the wake-up comes late
    loop.run_until(100.012)
    assert a.pumps == [(100.0124, 100.0124)] and clock.slept == []
    b = Client("b")
    pacer.schedule(b, 100.5)
    pacer._run()  # a stray early wake-up: too far ahead to sleep for, nothing is sent
    assert not b.pumps and clock.slept == []
    assert [t.when for t in loop.armed()][-1] < 100.5


def test_the_loop_pacer_takes_fine_mode() -> None:
    import asyncio

    from streamd.pacer import loop_pacer

    async def main() -> None:
        assert loop_pacer(0.0, fine=True).fine
        assert loop_pacer().fine  # unchanged unless given
        assert not loop_pacer(0.002, fine=False).fine

    asyncio.run(main())
