"""Admission counts (streamd/limits.py): per client and in total, released on every exit."""

from __future__ import annotations

import resource

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamd.limits import Admission, HeadDeadline, raise_open_files_limit
from streamd.rtsp.errors import RtspError


def test_admission_bounds_per_client_then_in_total() -> None:
    limits = Admission(total=3, per_client=2, what="remuxes")
    assert limits.admit("a") and limits.admit("a")
    assert not limits.admit("a") and "from a" in (limits.refusal("a") or "")
    assert limits.admit("b")
    assert not limits.admit("c") and "3 remuxes at once" in (limits.refusal("c") or "")
    limits.release("a")
    assert limits.admit("c") and limits.active == 3


def test_hold_releases_on_error_and_refuses_with_the_status() -> None:
    limits = Admission(total=1, per_client=1)
    with pytest.raises(ValueError), limits.hold("a"):
        raise ValueError
    assert limits.active == 0
    with limits.hold("a"), pytest.raises(RtspError) as refused, limits.hold("b"):
        pass
    assert refused.value.status == 503 and limits.active == 0


@given(st.lists(st.tuples(st.booleans(), st.sampled_from("abc"))), st.integers(1, 4), st.integers(1, 4))
def test_counts_never_exceed_the_limits(steps: list[tuple[bool, str]], total: int, per_client: int) -> None:
    limits = Admission(total, per_client)
    for admit, client in steps:
        if admit:
            limits.admit(client)
        elif limits.counts[client]:
            limits.release(client)
        assert limits.active <= total and all(n <= per_client for n in limits.counts.values())


def test_a_trickled_request_head_expires_from_its_first_byte() -> None:
    head = HeadDeadline(10.0)
    head.update(0, False, now=0.0)
    assert head.due is None and not head.expired(1e9)  # nothing unfinished: no deadline
    for second in range(1, 10):  # a byte a second: never resets the deadline
        head.update(second, False, now=float(second))
        assert head.due == 11.0
    assert not head.expired(10.9) and head.expired(11.0)
    head.update(0, True, now=10.5)  # the request completed in time
    assert head.due is None
    head.update(3, False, now=12.0)  # the next one starts its own clock
    assert head.due == 22.0


def test_reads_that_complete_messages_but_end_mid_frame_are_never_cut() -> None:
    """A TCP publisher's interleaved frames: each read finishes frames and starts the next."""
    head = HeadDeadline(10.0)
    for second in range(100):
        head.update(700, True, now=float(second))
        assert not head.expired(second + 0.5)


def test_the_soft_open_files_limit_is_raised_to_the_hard_one() -> None:
    soft, hard = raise_open_files_limit()
    assert (soft, hard) == resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft == hard or hard == resource.RLIM_INFINITY


def test_a_hold_handed_over_frees_the_clients_share_but_not_the_total() -> None:
    limits = Admission(total=2, per_client=1)
    with limits.hold("a") as held:
        assert limits.refusal("a") is not None
        held.hand_over("(finishing)")
        assert limits.refusal("a") is None and limits.active == 1  # a may start again ...
        with limits.hold("a"):
            assert limits.refusal("b") is not None  # ... and the work it left still counts
    assert limits.active == 0 and not limits.counts
