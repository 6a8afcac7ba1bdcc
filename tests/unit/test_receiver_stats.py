"""Receiver statistics on synthetic packet sequences whose right answers are known."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamd.rtp.receiver_stats import ReceiverStats

CLOCK = 90000
STEP = 3000  # 30 fps in a 90 kHz clock


def feed(stats: ReceiverStats, seqs: list[int], start_seq: int = 0, transit: float = 0.01) -> None:
    """Packets numbered ``start_seq + i`` (mod 2^16) for each i, each on its own schedule."""
    for i in seqs:
        stats.receive((start_seq + i) % 65536, (1000 + i * STEP) % 2**32, i * STEP / CLOCK + transit)


def test_clean_stream_counts_all_but_the_probation_packet() -> None:
    stats = ReceiverStats(CLOCK)
    feed(stats, list(range(100)))
    # A.1: the first packet only starts probation; counting begins at the second
    assert (stats.received, stats.expected, stats.lost) == (99, 99, 0)
    assert stats.jitter == 0 and stats.duplicates == stats.reordered == stats.late == 0


def test_sequence_wrap_extends_the_counter() -> None:
    stats = ReceiverStats(CLOCK)
    feed(stats, list(range(20)), start_seq=65530)
    assert stats.cycles == 65536
    assert stats.extended_max == 65536 + 13
    assert (stats.expected, stats.lost) == (19, 0)


def test_losses_are_counted_across_the_wrap() -> None:
    stats = ReceiverStats(CLOCK)
    feed(stats, [i for i in range(40) if i not in (5, 6, 7, 12, 30)], start_seq=65520)
    assert (stats.expected, stats.received, stats.lost) == (39, 34, 5)


def test_duplicates_and_reordering() -> None:
    stats = ReceiverStats(CLOCK)
    feed(stats, [0, 1, 2, 4, 3, 5, 5, 6, 6, 6, 7])
    assert stats.duplicates == 3
    assert stats.reordered == 1
    # RFC 3550 counts duplicates as received, so the loss goes negative
    assert stats.lost == -3


def test_a_lone_jump_is_ignored_and_a_confirmed_one_restarts() -> None:
    stats = ReceiverStats(CLOCK)
    feed(stats, list(range(10)))
    assert not stats.receive(20000, 0, 1.0).valid  # one stray packet far ahead
    feed(stats, [10, 11])
    assert (stats.restarts, stats.lost) == (0, 0)
    assert stats.receive(40000, 0, 2.0).valid is False
    assert stats.receive(40001, 3000, 2.1).valid  # the next in sequence confirms the restart
    assert stats.restarts == 1
    assert (stats.received, stats.expected, stats.lost) == (1, 1, 0)


def test_probation_restarts_on_a_gap() -> None:
    stats = ReceiverStats(CLOCK)
    assert not stats.receive(100, 0, 0.0).valid
    assert not stats.receive(105, 0, 0.0).valid  # out of sequence: probation again from here
    assert stats.receive(106, 0, 0.0).valid
    assert stats.base_seq == 106


def test_jitter_follows_the_a8_recursion() -> None:
    stats = ReceiverStats(CLOCK)
    # transit alternates between 10 ms and 14 ms: |D| = 4 ms = 360 ticks for every packet after the first
    for i in range(50):
        stats.receive(i, i * STEP, i * STEP / CLOCK + (0.010 if i % 2 == 0 else 0.014))
    updates = 48  # packet 0 is in probation, packet 1 sets the first transit
    assert stats.jitter == pytest.approx(360 * (1 - (15 / 16) ** updates))
    assert stats.jitter_seconds == pytest.approx(stats.jitter / CLOCK)


def test_jitter_across_the_timestamp_wrap() -> None:
    stats = ReceiverStats(CLOCK)
    for i in range(30):
        stats.receive(i, (2**32 - 10 * STEP + i * STEP) % 2**32, i * STEP / CLOCK)
    assert stats.jitter == pytest.approx(0, abs=1e-6)


def test_late_packets_against_the_playout_deadline() -> None:
    stats = ReceiverStats(CLOCK, playout_delay=0.1)
    feed(stats, [0, 1, 2])
    due = 3 * STEP / CLOCK + 0.01  # on schedule, like the first counted packet
    early = stats.receive(3, 1000 + 3 * STEP, due + 0.05)
    late = stats.receive(4, 1000 + 4 * STEP, 4 * STEP / CLOCK + 0.01 + 0.15)
    assert not early.late and early.lateness == pytest.approx(-0.05)
    assert late.late and late.lateness == pytest.approx(0.05)
    assert stats.late == 1


def test_report_block_intervals_lsr_and_dlsr() -> None:
    stats = ReceiverStats(CLOCK)
    feed(stats, list(range(11)))
    first = stats.report_block(0x1234, now=1.0)
    assert (first.fraction_lost, first.packets_lost, first.lsr, first.dlsr) == (0, 0, 0, 0)
    stats.sender_report(0xAABBCCDD_EEFF0011, arrival=2.0)
    feed(stats, [i for i in range(11, 31) if i not in (15, 16, 17, 18, 19)])  # 5 of 20 lost
    block = stats.report_block(0x1234, now=2.5)
    assert block.fraction_lost == (5 << 8) // 20
    assert block.packets_lost == 5
    assert block.highest_sequence == 30
    assert block.lsr == 0xCCDDEEFF
    assert block.dlsr == 32768  # 0.5 s in 1/65536 s
    assert stats.report_block(0x1234, now=3.0).fraction_lost == 0  # nothing new lost since


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(min_value=8, max_value=1500),
    start=st.integers(min_value=0, max_value=65535),
    data=st.data(),
)
def test_known_drops_duplicates_and_swaps(n: int, start: int, data: st.DataObject) -> None:
    """Any mix of drops, duplicates and adjacent swaps is counted exactly (first two and last kept)."""
    middle = list(range(2, n - 1))
    dropped = set(data.draw(st.lists(st.sampled_from(middle), unique=True, max_size=len(middle) // 3)))
    kept = [i for i in range(n) if i not in dropped]
    duplicated = set(data.draw(st.lists(st.sampled_from(kept[2:]), unique=True, max_size=20)))
    order: list[int] = []
    for i in kept:
        order += [i, i] if i in duplicated else [i]
    swaps = data.draw(st.lists(st.integers(min_value=2, max_value=len(order) - 3), max_size=10))
    for k in swaps:
        if order[k] != order[k + 1] and order[k + 1] != n - 1:
            order[k], order[k + 1] = order[k + 1], order[k]
    stats = ReceiverStats(CLOCK)
    feed(stats, order, start_seq=start)
    assert stats.expected == n - 1
    assert stats.duplicates == len(duplicated)
    assert stats.lost == len(dropped) - len(duplicated)
    assert stats.restarts == 0
    assert stats.extended_max - stats.base_seq == n - 2


@given(st.lists(st.tuples(st.integers(0, 65535), st.integers(0, 2**32 - 1), st.floats(0, 1e6)), max_size=300))
def test_arbitrary_input_never_breaks_the_counters(packets: list[tuple[int, int, float]]) -> None:
    stats = ReceiverStats(48000)
    for seq, ts, arrival in packets:
        stats.receive(seq, ts, arrival)
    block = stats.report_block(1, now=1e6)
    assert 0 <= block.fraction_lost <= 255
    assert -(1 << 23) <= block.packets_lost < 1 << 23
    assert stats.jitter >= 0
    bytes(block)  # packs into a valid report block
