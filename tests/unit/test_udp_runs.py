"""Which packets the UDP sender may hand to the kernel as one GSO buffer."""

from __future__ import annotations

from streamd.transport.udp import _equal_run


def sizes(*ns: int) -> list[bytes]:
    return [bytes(n) for n in ns]


def runs(packets: list[bytes]) -> list[int]:
    out, i = [], 0
    while i < len(packets):
        j = _equal_run(packets, i)
        out.append(j - i)
        i = j
    return out


def test_fragments_of_one_nal_unit_are_one_run() -> None:
    assert runs(sizes(1400, 1400, 1400, 300)) == [4]


def test_a_smaller_first_packet_stands_alone() -> None:
    # STAP-A with SPS/PPS, then the IDR's FU-A fragments
    assert runs(sizes(40, 1400, 1400, 900)) == [1, 3]


def test_a_larger_packet_after_a_short_one_starts_a_new_run() -> None:
    assert runs(sizes(1400, 300, 1400, 1400)) == [2, 2]
    assert runs(sizes(100, 200)) == [1, 1]


def test_runs_respect_the_kernel_limits() -> None:
    assert runs(sizes(*[1000] * 70)) == [64, 6]  # at most 64 segments
    assert runs(sizes(*[1400] * 50)) == [46, 4]  # at most ~64 KB per buffer
