"""Delivery directives of a live playlist request (RFC 8216bis 6.2.5): parsing and when to answer.

Sans-I/O: :func:`parse` reads the query (400 for anything malformed), :func:`decide` says whether
the playlist can be sent now, must wait, or is refused because the requested part lies too far
ahead (6.2.5.2: more than two segments past the last one, or more parts than the Advance Part
Limit past the last part: 3 / PART-TARGET when that is under a second).
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from streamd.hls.live_segmenter import LiveSegmenter

_DECIMAL = re.compile(r"[0-9]{1,18}")  # decimal-integer; 18 digits keep it a machine integer


class DirectiveError(ValueError):
    """A malformed delivery directive: the request gets 400 with this reason."""


@dataclass(frozen=True, slots=True)
class Directives:
    msn: int | None = None
    part: int | None = None
    skip: bool = False

    @property
    def blocking(self) -> bool:
        return self.msn is not None


def parse(query: Mapping[str, str]) -> Directives:
    """The ``_HLS_*`` parameters; unknown ``_HLS_`` names and other parameters are ignored."""
    msn = _integer(query, "_HLS_msn")
    part = _integer(query, "_HLS_part")
    if part is not None and msn is None:
        raise DirectiveError("_HLS_part without _HLS_msn")
    skip = query.get("_HLS_skip")
    if skip is not None and skip not in ("YES", "v2"):
        raise DirectiveError(f"_HLS_skip must be YES or v2, not {skip[:20]!r}")
    return Directives(msn, part, skip is not None)


def _integer(query: Mapping[str, str], name: str) -> int | None:
    value = query.get(name)
    if value is None:
        return None
    if not _DECIMAL.fullmatch(value):
        raise DirectiveError(f"{name} must be a decimal integer, not {value[:20]!r}")
    return int(value)


class Decision(enum.Enum):
    READY = "ready"
    WAIT = "wait"
    TOO_FAR = "too far"


def advance_part_limit(part_target: float) -> int:
    return math.ceil(3 / part_target) if 0 < part_target < 1 else 3


def decide(segmenter: LiveSegmenter, directives: Directives) -> Decision:
    """Whether a request with ``directives`` can be answered now (not blocking: always)."""
    if directives.msn is None or segmenter.ended:
        return Decision.READY  # 6.2.5.2: directives are ignored once the playlist has ENDLIST
    msn, part = directives.msn, directives.part
    if msn > segmenter.last_complete + 2:
        return Decision.TOO_FAR
    if part is None:
        return Decision.READY if msn <= segmenter.last_complete else Decision.WAIT
    if segmenter.has_part(msn, part):
        return Decision.READY
    next_msn, next_index = segmenter.next_part
    ahead = part - next_index  # parts past the one being made
    if msn > next_msn:  # the segment after the open one (msn is at most last complete + 2)
        ahead += (msn - next_msn) * _parts_per_segment(segmenter)
    if ahead >= advance_part_limit(segmenter.part_target or 1.0):
        return Decision.TOO_FAR
    return Decision.WAIT


def _parts_per_segment(segmenter: LiveSegmenter) -> int:
    if segmenter.part_target:
        return max(1, round(segmenter.target_duration / segmenter.part_target))
    return 1
