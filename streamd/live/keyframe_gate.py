"""Where a live reader may begin: video on a keyframe, and not on the RASL pictures after it.

A reader that joins a live path mid-stream cannot decode video before the next keyframe, so
it is sent nothing until one arrives (audio too: both begin together). An HEVC CRA keyframe
may be followed by RASL ("leading") pictures that refer to pictures before it; a reader that
began at that CRA skips them until the first picture that is not leading. Used by every
reader of a live path: unicast readers and the multicast group send.

A reader waiting here would wait for the source's next keyframe, a whole GOP (seconds with
cameras, minutes with some encoders): the first picture it has to refuse calls ``on_wait``,
and the reader asks the path's source for a keyframe; again every ``ASK_AGAIN_AFTER`` refused
pictures, in case that request fell within the source's rate limit after a keyframe it had
just made for someone else.
"""

from __future__ import annotations

from collections.abc import Callable

ASK_AGAIN_AFTER = 30  # refused pictures (about a second) before a waiting reader asks again


class KeyframeGate:
    """Admits a reader's units from the first video keyframe on."""

    __slots__ = ("_on_wait", "_open_gop", "_refused", "open")

    def __init__(self, has_video: bool, on_wait: Callable[[], None] | None = None) -> None:
        self.open = not has_video  # audio-only paths begin at once
        self._open_gop = False  # began on a keyframe whose RASL pictures may follow
        self._on_wait = on_wait
        self._refused = 0  # video pictures refused while waiting

    def admit(self, video: bool, keyframe: bool, leading: bool) -> bool:
        """Whether this unit goes to the reader."""
        if not self.open:
            if not (video and keyframe):
                if video and self._on_wait is not None:
                    if self._refused % ASK_AGAIN_AFTER == 0:
                        self._on_wait()
                    self._refused += 1
                return False
            self.open = self._open_gop = True
            return True
        if video and self._open_gop:
            if leading:  # refers to pictures from before we joined: the player could not decode it
                return False
            self._open_gop = False
        return True
