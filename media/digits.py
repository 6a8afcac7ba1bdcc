"""Seven-segment digits drawn with numpy, so the synthetic test stream can show a running clock.

A clock burnt into the picture makes frame loss, freezes, seeks and A/V offset visible by eye in
any player, without fonts or an imaging library.
"""

from __future__ import annotations

from functools import cache

import numpy as np

# Segments a..g, in the usual order: top, top-right, bottom-right, bottom, bottom-left, top-left, middle.
_SEGMENTS = {
    "0": "abcdef",
    "1": "bc",
    "2": "abdeg",
    "3": "abcdg",
    "4": "bcfg",
    "5": "acdfg",
    "6": "acdefg",
    "7": "abc",
    "8": "abcdefg",
    "9": "abcdfg",
    "-": "g",
    " ": "",
}


@cache
def glyph(char: str, height: int) -> np.ndarray:
    """A boolean mask (height x width) of one character; ':' and '.' are narrow."""
    h = height
    w = h // 2
    t = max(2, h // 10)  # stroke thickness
    if char in ":.":
        mask = np.zeros((h, t * 3), dtype=bool)
        rows = (h * 3 // 4,) if char == "." else (h // 4, h * 3 // 4)
        for r in rows:
            mask[r - t // 2 : r - t // 2 + t, t : 2 * t] = True
        return mask
    if char not in _SEGMENTS:
        raise ValueError(f"no seven-segment glyph for {char!r}")
    mask = np.zeros((h, w), dtype=bool)
    mid = h // 2
    boxes = {
        "a": (slice(0, t), slice(0, w)),
        "b": (slice(0, mid), slice(w - t, w)),
        "c": (slice(mid, h), slice(w - t, w)),
        "d": (slice(h - t, h), slice(0, w)),
        "e": (slice(mid, h), slice(0, t)),
        "f": (slice(0, mid), slice(0, t)),
        "g": (slice(mid - t // 2, mid - t // 2 + t), slice(0, w)),
    }
    for seg in _SEGMENTS[char]:
        mask[boxes[seg]] = True
    return mask


def text_mask(text: str, height: int, gap: int | None = None) -> np.ndarray:
    """The boolean mask of a string of digits and separators, glyphs side by side."""
    gap = max(1, height // 8) if gap is None else gap
    parts: list[np.ndarray] = []
    for i, ch in enumerate(text):
        if i:
            parts.append(np.zeros((height, gap), dtype=bool))
        parts.append(glyph(ch, height))
    if not parts:
        return np.zeros((height, 0), dtype=bool)
    return np.concatenate(parts, axis=1)


def draw_text(plane: np.ndarray, text: str, top: int, left: int, height: int, value: int) -> None:
    """Paint ``text`` into a 2-D plane (e.g. the luma plane) in place, clipped to the plane."""
    mask = text_mask(text, height)
    h = min(mask.shape[0], plane.shape[0] - top)
    w = min(mask.shape[1], plane.shape[1] - left)
    if h <= 0 or w <= 0:
        return
    region = plane[top : top + h, left : left + w]
    region[mask[:h, :w]] = value
