"""How media time maps to RTP time during one PLAY: the Scale rule of RFC 2326 12.34.

At Scale 1 the RTP clock runs with the media (timestamp = PTS). At Scale s the media advances s
times faster than the RTP clock: the RFC's example plays 30 fps video at Scale 2 by dropping every
second frame while keeping the normal 3000-tick spacing, so RTP time is media time divided by s.
Each PLAY starts a new segment that continues RTP time from where the last one stood, so
timestamps never jump back, even after a seek.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True, slots=True)
class Timeline:
    media_anchor: Fraction = Fraction(0)  # file seconds where this segment starts
    rtp_anchor: Fraction = Fraction(0)  # RTP seconds (before offset) at that point
    scale: Fraction = Fraction(1)

    def rtp_seconds(self, media: Fraction) -> Fraction:
        return self.rtp_anchor + (media - self.media_anchor) / self.scale

    def next_segment(self, left_at: Fraction, resume_at: Fraction, scale: Fraction) -> Timeline:
        """The segment of the next PLAY: RTP time goes on from where this one was left."""
        return Timeline(resume_at, self.rtp_seconds(left_at), scale)
