from __future__ import annotations

import math
import random

from hypothesis import given
from hypothesis import strategies as st

from streamd.rtp.rtcp_interval import rtcp_interval


def test_small_session_uses_the_minimum() -> None:
    """Unicast on-demand: two members, one sender; 5 s minimum, randomised 0.5..1.5 / (e - 1.5)."""
    values = [
        rtcp_interval(members=2, senders=1, session_bandwidth=125_000, avg_rtcp_size=100, we_sent=True,
                      initial=False, rng=random.Random(i))
        for i in range(2000)
    ]  # fmt: skip
    low, high = 5 * 0.5 / (math.e - 1.5), 5 * 1.5 / (math.e - 1.5)
    assert low <= min(values) and max(values) <= high
    assert abs(sum(values) / len(values) - 5 / (math.e - 1.5)) < 0.1


def test_initial_interval_is_halved() -> None:
    rng = random.Random(1)
    value = rtcp_interval(members=2, senders=1, session_bandwidth=125_000, avg_rtcp_size=100, we_sent=True,
                          initial=True, rng=rng)  # fmt: skip
    assert value <= 2.5 * 1.5 / (math.e - 1.5)


def test_large_group_scales_with_members() -> None:
    """1000 receivers of a 64 kbit/s stream: members x size / bandwidth dominates the minimum."""
    rng = random.Random(2)
    value = rtcp_interval(members=1001, senders=1, session_bandwidth=8000, avg_rtcp_size=100, we_sent=False,
                          initial=False, rng=rng)  # fmt: skip
    # receivers share 75 % of 400 B/s: 1000 x 100 / 300 = 333 s deterministic
    assert 333 * 0.5 / (math.e - 1.5) <= value <= 334 * 1.5 / (math.e - 1.5)


@given(
    st.integers(1, 10_000),
    st.integers(0, 100),
    st.floats(0, 1e9),
    st.floats(20, 1500),
    st.booleans(),
    st.booleans(),
)
def test_always_positive_and_finite(members, senders, bw, size, we_sent, initial) -> None:
    value = rtcp_interval(members=members, senders=min(senders, members), session_bandwidth=bw,
                          avg_rtcp_size=size, we_sent=we_sent, initial=initial)  # fmt: skip
    assert 0 < value < math.inf
