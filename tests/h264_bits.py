"""H.264 bitstream facts the WebRTC conversion tests check (no decoder needed)."""

from __future__ import annotations


def slice_type(nal: bytes) -> int:
    """slice_type, the second Exp-Golomb number of a slice header (``% 5 == 1``: a B slice)."""
    bits = "".join(f"{b:08b}" for b in nal[1:8])
    pos, values = 0, []
    for _ in range(2):
        zeros = bits.index("1", pos) - pos
        values.append(int(bits[pos + zeros : pos + 2 * zeros + 1], 2) - 1)
        pos += 2 * zeros + 1
    return values[1]
