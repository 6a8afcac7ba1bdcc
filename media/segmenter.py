"""Where a recording is cut into files: each starts at a video keyframe once the current one is long enough.

A file that does not start with a keyframe cannot be played from its beginning, so a recording with
video starts at its first keyframe (earlier units are skipped) and each new file at the first
keyframe after ``length`` seconds. Audio-only recordings are cut at any unit.
"""

from __future__ import annotations

from enum import Enum


class Placement(Enum):
    SKIP = "skip"  # before the first file can start: not recorded
    START = "start"  # this unit begins a new file
    APPEND = "append"  # this unit goes into the current file


class Segmenter:
    def __init__(self, length: float, has_video: bool) -> None:
        if length <= 0:
            raise ValueError("segment length must be positive")
        self.length = length
        self.has_video = has_video
        self.start: float | None = None  # the current file's start, in seconds of the recording

    def place(self, seconds: float, video: bool, keyframe: bool, *, force: bool = False) -> Placement:
        """Where the unit at ``seconds`` goes; ``force`` cuts at this unit if it may begin a file."""
        can_begin = (video and keyframe) if self.has_video else True
        if self.start is None:
            if not can_begin:
                return Placement.SKIP
            self.start = seconds
            return Placement.START
        if can_begin and (force or seconds - self.start >= self.length):
            self.start = seconds
            return Placement.START
        return Placement.APPEND

    def reset(self) -> None:
        """The file could not begin here: wait for the next unit that may begin one."""
        self.start = None
