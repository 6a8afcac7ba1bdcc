"""Where a live reader may begin: video on a keyframe, and not on the RASL pictures after it.

A reader that joins a live path mid-stream cannot decode video before the next keyframe, so
it is sent nothing until one arrives (audio too: both begin together). An HEVC CRA keyframe
may be followed by RASL ("leading") pictures that refer to pictures before it; a reader that
began at that CRA skips them until the first picture that is not leading. Used by every
reader of a live path: unicast readers and the multicast group send.
"""

from __future__ import annotations


class KeyframeGate:
    """Admits a reader's units from the first video keyframe on."""

    __slots__ = ("_open_gop", "open")

    def __init__(self, has_video: bool) -> None:
        self.open = not has_video  # audio-only paths begin at once
        self._open_gop = False  # began on a keyframe whose RASL pictures may follow

    def admit(self, video: bool, keyframe: bool, leading: bool) -> bool:
        """Whether this unit goes to the reader."""
        if not self.open:
            if not (video and keyframe):
                return False
            self.open = self._open_gop = True
            return True
        if video and self._open_gop:
            if leading:  # refers to pictures from before we joined: the player could not decode it
                return False
            self._open_gop = False
        return True
