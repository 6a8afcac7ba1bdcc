"""What DESCRIBE offers for a live path: the publisher's tracks under our own track controls."""

from __future__ import annotations

from media.track import MediaInfo
from streamd.live.announced import AnnouncedTrack
from streamd.live.hub import LivePath
from streamd.rtp.presentation import Presentation, StreamableTrack


def live_presentation(
    live: LivePath | None, name: str = "", tracks: list[AnnouncedTrack] | None = None
) -> Presentation:
    """What DESCRIBE offers for a live path: the publisher's tracks, with our controls."""
    announced = [t.announced for t in live.tracks.values()] if live is not None else list(tracks or [])
    streamables = tuple(StreamableTrack(t.track, t.payload_format, f"trackID={t.index}") for t in announced)
    info = MediaInfo("", "live", None, 0, 0, tuple(t.track for t in announced))
    return Presentation(live.name if live is not None else name, info, streamables, (), loop=True, title=None)
