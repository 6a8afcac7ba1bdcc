from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from media.mpegts import PACKETS_PER_CHUNK, TS_PACKET, TsTimer, pcr_of


def ts_packet(pcr: int | None = None, fill: int = 0) -> bytes:
    if pcr is None:
        return bytes([0x47, 0x01, 0x00, 0x10]) + bytes([fill]) * 184
    base = pcr
    af = bytes([7, 0x10, (base >> 25) & 0xFF, (base >> 17) & 0xFF, (base >> 9) & 0xFF, (base >> 1) & 0xFF,
                ((base & 1) << 7) | 0x7E, 0])  # fmt: skip
    return bytes([0x47, 0x01, 0x00, 0x30]) + af + bytes([0xFF]) * (184 - len(af))


def test_pcr_parsing() -> None:
    assert pcr_of(ts_packet(123456789)) == 123456789
    assert pcr_of(ts_packet()) is None


def test_times_interpolate_between_pcrs() -> None:
    # PCR every 14 packets, 9000 ticks (100 ms) apart: two chunks per interval, 4500 ticks apart
    stream = b"".join(
        ts_packet(1000 + 9000 * k) if i == 0 else ts_packet(fill=i) for k in range(5) for i in range(14)
    )
    timer = TsTimer()
    chunks = timer.feed(stream) + timer.flush()
    assert b"".join(c for _, c in chunks) == stream  # every byte, in order, unchanged
    assert all(len(c) % TS_PACKET == 0 for _, c in chunks)
    assert [t for t, _ in chunks[:8]] == [0, 4500, 9000, 13500, 18000, 22500, 27000, 31500]


def test_pcr_wrap_keeps_time_increasing() -> None:
    top = (1 << 33) - 4500
    stream = b"".join(ts_packet((top + 9000 * k) % (1 << 33)) if i == 0 else ts_packet() for k in range(4)
                      for i in range(PACKETS_PER_CHUNK))  # fmt: skip
    timer = TsTimer()
    times = [t for t, _ in timer.feed(stream) + timer.flush()]
    assert times == sorted(times) and times[-1] == 27000


def test_garbage_between_packets_is_skipped() -> None:
    stream = ts_packet(0) + b"\x00\x01garbage" + ts_packet() * 6
    timer = TsTimer()
    chunks = timer.feed(stream) + timer.flush()
    assert b"".join(c for _, c in chunks) == ts_packet(0) + ts_packet() * 6


@settings(max_examples=50)
@given(st.binary(max_size=3000), st.integers(1, 500))
def test_any_split_never_crashes_and_keeps_packets(data: bytes, step: int) -> None:
    timer = TsTimer()
    out = []
    for i in range(0, len(data), step):
        out += timer.feed(data[i : i + step])
    out += timer.flush()
    assert all(len(c) % TS_PACKET == 0 and c[0] == 0x47 for _, c in out)
