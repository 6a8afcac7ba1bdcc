"""A live path's audio that browsers cannot take, re-encoded to Opus once for all its WebRTC viewers.

The converter taps the hub's access units of one track (``LivePath.unit_listeners``, where the
recorder taps too), decodes and re-encodes them with the same ``AudioTranscoder`` files use, and
packetizes each Opus unit once; every WebRTC viewer of the path gets those payloads with its own
header, as it gets the hub's. The first viewer starts it, the last one stops it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from fractions import Fraction

from media.access_unit import AccessUnit
from media.errors import MediaError
from media.track import AacConfig, Track
from media.transcode import AudioTranscoder
from streamd.live.hub import LivePath, LiveTrack, Payloads
from streamd.rtp.payload.base import PayloadFormat
from streamd.rtp.payload.registry import payload_format_for

log = logging.getLogger(__name__)

Listener = Callable[[int, int, Payloads, bool, bool], None]
CONVERTIBLE = ("aac", "mp3", "mp2", "ac3", "eac3")


class AudioToOpus:
    """One track of one live path, as Opus (48 kHz ticks), for any number of listeners."""

    def __init__(self, live: LivePath, index: int) -> None:
        self.live = live
        self.index = index
        source = _decodable(live.tracks[index].announced.track)
        self.source_rate = live.tracks[index].clock_rate
        self.coder = AudioTranscoder(source, "opus")
        self.track: Track = replace(self.coder.track, index=index)
        self.payload_format: PayloadFormat = payload_format_for(self.track, 111)
        self.listeners: set[Listener] = set()
        self.failed = False
        live.unit_listeners.add(self._unit)

    def close(self) -> None:
        self.live.unit_listeners.discard(self._unit)
        self.listeners.clear()

    def _unit(self, track: LiveTrack, au: AccessUnit) -> None:
        if track.index != self.index or self.failed or not self.listeners:
            return
        try:
            units = self.coder.feed(au)
        except (MediaError, ValueError, OSError) as exc:  # PyAV's errors are OSErrors
            self.failed = True
            log.warning("%s: converting track %d to Opus stopped: %s", self.live.name, self.index, exc)
            return
        for unit in units:
            payloads = self.payload_format.packetize(unit)
            for listener in list(self.listeners):
                listener(self.index, unit.pts, payloads, True, False)

    def ticks(self, source_ticks: int) -> int:
        """A source timestamp (the path's clock for this track) in Opus's 48 kHz."""
        return round(Fraction(source_ticks * 48000, self.source_rate))


def convertible(track: Track) -> bool:
    return track.kind == "audio" and track.codec in CONVERTIBLE


def _decodable(track: Track) -> Track:
    """The announced track with what a decoder needs: AAC's AudioSpecificConfig as extradata."""
    if track.codec == "aac" and not track.extradata and isinstance(track.config, AacConfig):
        config = track.config
        return replace(track, extradata=config.audio_specific_config, sample_rate=config.sample_rate)
    return track
