"""Whether a live track's pictures come out of presentation order (H.264 with B-frames).

RTP carries one timestamp per picture, the presentation time, and pictures in decode order, so
a stream with B-frames shows as timestamps that go back: the picture after a reference frame is
shown before it. That is what browsers' WebRTC decoders cannot take, and it is seen in the
stream itself, which the SPS need not tell (``max_num_reorder_frames`` is in the optional VUI).
"""

from __future__ import annotations

from dataclasses import dataclass

# timestamps that went back before we call the track reordered: one could be a publisher's clock
# hiccup; B-frames make one every few pictures
REORDERED_AFTER = 2


@dataclass
class ReorderDetector:
    """Fed every access unit's timestamp in arrival (decode) order; ``reordered`` once seen."""

    highest: int | None = None
    went_back: int = 0

    @property
    def reordered(self) -> bool:
        return self.went_back >= REORDERED_AFTER

    def see(self, pts: int, keyframe: bool) -> None:
        if keyframe:  # a new group of pictures; a publisher's restart may also reset its clock
            self.highest = pts
            return
        if self.highest is not None and pts < self.highest:
            self.went_back += 1
        elif self.highest is None or pts > self.highest:
            self.highest = pts
