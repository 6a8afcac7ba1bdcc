"""One live path as an LL-HLS stream: its access units made into CMAF samples for the segmenter.

A reader of the path like an RTSP reader, but one for all HLS viewers: it taps the path's access
units (``LivePath.unit_listeners``, as the recorder does), so everything here runs on the event
loop and costs a few dictionary look-ups and one ``moof`` per part. What it adds to the units:

- decode timestamps for video, which RTP does not carry (:class:`media.dts.DtsGenerator`);
- one timeline for all tracks: each track is anchored at its first unit to a wall instant (the
  publisher's RTCP sender-report clock when every track had one, else arrival), so audio and
  video line up as the publisher sent them (as in :mod:`streamd.live.recorder`);
- ``EXT-X-PROGRAM-DATE-TIME``: a keyframe's presentation time on the publisher's wall clock from
  its latest sender report (NTP -> RTP mapping), else the arrival clock;
- the init segment, made when the first keyframe with parameter sets arrives.

Tracks: the first H.264/H.265 video and the first AAC/Opus audio; anything else is left out
(logged). A change of video parameter sets mid-stream (a new init segment) is not supported:
the stream ends there (ENDLIST) and a new one begins for the viewers who reload.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from media import h264, h265
from media.access_unit import AccessUnit
from media.dts import DtsGenerator
from media.muxer import MuxTrack, opus_head, video_size
from media.track import AacConfig, H264Config, H265Config
from streamd.hls.live_fmp4 import Sample, init_segment
from streamd.hls.live_playlist import LiveNames
from streamd.hls.live_segmenter import LiveSegmenter, Part, SegmenterSettings
from streamd.live.hub import LivePath, LiveTrack

log = logging.getLogger(__name__)

BASE_SECONDS = 10.0  # the timeline starts this far before the first unit: DTS below PTS, early audio
MAX_EARLY = 1024  # samples of other tracks held while the first keyframe is on its way
_PARAMETER_TYPES = {"h264": (h264.NAL_SPS, h264.NAL_PPS), "hevc": (32, 33, 34)}


@dataclass
class _Input:
    index: int  # the live path's track index
    slot: int  # track ID - 1 in the init segment
    codec: str
    clock: int
    extradata: bytes = b""
    sample_rate: int = 0
    channels: int = 0
    params: dict[int, bytes] = field(default_factory=dict)
    dts: DtsGenerator[AccessUnit] | None = None
    offset: int | None = None  # timeline ticks = track ticks + offset

    @property
    def video(self) -> bool:
        return self.codec in ("h264", "hevc")

    def nal_type(self, nal: bytes) -> int:
        return h264.nal_type(nal) if self.codec == "h264" else h265.nal_type(nal)

    def parameter_sets(self) -> tuple[bytes, ...]:
        return tuple(self.params[t] for t in _PARAMETER_TYPES[self.codec] if t in self.params)

    def complete(self) -> bool:
        return all(t in self.params for t in _PARAMETER_TYPES[self.codec])


def choose_tracks(live: LivePath) -> tuple[list[_Input], list[str]]:
    """The tracks HLS carries, in init-segment order, and why the others are left out."""
    inputs: list[_Input] = []
    left_out: list[str] = []
    for track in sorted(live.tracks.values(), key=lambda t: t.index):
        announced = track.announced
        codec, what = announced.track.codec, f"track {track.index} ({announced.track.codec})"
        if not announced.depacketize or codec not in ("h264", "hevc", "aac", "opus"):
            left_out.append(f"{what}: HLS carries H.264, H.265, AAC and Opus")
            continue
        item = _Input(track.index, len(inputs), codec, track.clock_rate)
        if item.video:
            if any(i.video for i in inputs):
                left_out.append(f"{what}: only the first video track")
                continue
            item.dts = DtsGenerator()
            config = announced.track.config
            sets: tuple[bytes, ...] = ()
            if isinstance(config, H264Config):
                sets = config.sps + config.pps
            elif isinstance(config, H265Config):
                sets = config.vps + config.sps + config.pps
            for nal in sets:
                item.params.setdefault(item.nal_type(nal), nal)
        else:
            if any(not i.video for i in inputs):
                left_out.append(f"{what}: only the first audio track")
                continue
            if codec == "aac":
                config = announced.track.config
                if not isinstance(config, AacConfig):
                    left_out.append(f"{what}: no AudioSpecificConfig")
                    continue
                item.extradata = config.audio_specific_config
                item.sample_rate = config.extension_sample_rate or config.sample_rate
                item.channels = config.channels or announced.track.channels or 2
            else:
                item.channels = announced.track.channels if announced.track.channels in (1, 2) else 2
                item.sample_rate = 48000
                head = announced.track.extradata
                item.extradata = head if head.startswith(b"OpusHead") else opus_head(item.channels)
        inputs.append(item)
    # video first: it is the main track, and players expect it as track 1
    inputs.sort(key=lambda i: not i.video)
    for slot, item in enumerate(inputs):
        item.slot = slot
    return inputs, left_out


class LiveStream:
    """The HLS view of one live path: tap it with :meth:`attach`; ``on_parts`` hears of new parts."""

    def __init__(
        self,
        live: LivePath,
        settings: SegmenterSettings,
        *,
        wall: Callable[[], float] = time.time,
        on_parts: Callable[[list[Part]], None] | None = None,
    ) -> None:
        self.live = live
        self.wall = wall
        self.on_parts = on_parts
        self.inputs, self.left_out = choose_tracks(live)
        self.by_index = {i.index: i for i in self.inputs}
        self.names = LiveNames(secrets.token_hex(4))
        self.segmenter = LiveSegmenter([i.clock for i in self.inputs], 0, settings)
        self.init: bytes | None = None
        self.codecs = [i.codec for i in self.inputs]
        self._sender_clock: bool | None = None
        self._origin: float | None = None
        self._early: list[tuple[int, Sample]] = []  # other tracks' samples before the init segment

    @property
    def playable(self) -> bool:
        return bool(self.inputs)

    def attach(self) -> None:
        self.live.unit_listeners.add(self.on_unit)

    def detach(self) -> None:
        self.live.unit_listeners.discard(self.on_unit)

    def finish(self) -> None:
        """The path went offline (or the stream cannot go on): ENDLIST after what is there."""
        self.detach()
        for item in self.inputs:
            if item.dts is not None:
                for pts, dts, au in item.dts.flush():
                    self._sample(item, au, pts, dts)
        self._emit(self.segmenter.finish())

    def on_unit(self, track: LiveTrack, au: AccessUnit) -> None:
        item = self.by_index.get(track.index)
        if item is None or self.segmenter.ended:
            return
        if item.offset is None:
            self._anchor(item, track, au)
        if item.dts is None:
            self._sample(item, au, au.pts, au.pts)
            return
        for pts, dts, held in item.dts.push(au.pts, au):
            self._sample(item, held, pts, dts)

    def _anchor(self, item: _Input, track: LiveTrack, au: AccessUnit) -> None:
        if self._sender_clock is None:  # one clock for all tracks: the publisher's only if all have it
            tracks = [self.live.tracks.get(i.index) for i in self.inputs]
            self._sender_clock = all(t is not None and t.sender_ntp is not None for t in tracks)
        if self._sender_clock and track.sender_ntp is not None and track.sender_ts is not None:
            wall, at = track.sender_ntp, track.sender_ts
        else:
            wall, at = self.wall(), au.pts
        if self._origin is None:
            self._origin = wall - BASE_SECONDS
        item.offset = round((wall - self._origin) * item.clock) - at

    def _sample(self, item: _Input, au: AccessUnit, pts: int, dts: int) -> None:
        assert item.offset is not None
        wall = None
        if item.video:
            if self._parameter_sets(item, au) and self.init is not None:
                log.warning(
                    "%s: the video's parameter sets changed; the HLS stream ends here", self.live.name
                )
                self.finish()
                return
            data = h264.to_length_prefixed(au.nal_units or h264.split_annexb(au.data))
        else:
            data = au.data
        if item.slot == 0 and au.keyframe:
            if self.init is None and not self._make_init(item, au):
                return
            wall = self._wall_of(item, pts)
        sample = Sample(dts + item.offset, 0, pts - dts, data, au.keyframe or not item.video)
        if self.init is None:  # video's decode times lag: keep the audio of that while for its start
            if item.slot != 0 and len(self._early) < MAX_EARLY:
                self._early.append((item.slot, sample))
            return
        self._emit(self.segmenter.push(item.slot, sample, wall))
        if self._early:
            early, self._early = self._early, []
            for slot, held in early:
                self._emit(self.segmenter.push(slot, held))

    def _emit(self, parts: list[Part]) -> None:
        if parts and self.on_parts is not None:
            self.on_parts(parts)

    def _wall_of(self, item: _Input, pts: int) -> float:
        track = self.live.tracks.get(item.index)
        if track is not None and track.sender_ntp is not None and track.sender_ts is not None:
            return track.sender_ntp + (pts - track.sender_ts) / item.clock
        assert self._origin is not None and item.offset is not None
        return self._origin + (pts + item.offset) / item.clock

    def _parameter_sets(self, item: _Input, au: AccessUnit) -> bool:
        """Take in-band parameter sets; True when they differ from those in use."""
        changed = False
        for nal in au.nal_units:
            kind = item.nal_type(nal)
            if kind in _PARAMETER_TYPES[item.codec] and item.params.get(kind) != nal:
                changed = changed or kind in item.params
                item.params[kind] = nal
        return changed

    def _make_init(self, main: _Input, keyframe: AccessUnit) -> bool:
        tracks: list[MuxTrack] = []
        first = b""
        for item in self.inputs:
            if item.video:
                if not item.complete():
                    return False
                params = item.parameter_sets()
                body = [n for n in keyframe.nal_units if n not in params]
                first = h264.to_annexb((*params, *body))
                size = video_size(item.codec, first)
                if size is None:
                    return False
                tracks.append(MuxTrack(item.codec, item.clock, h264.to_annexb(params), *size))
            else:
                tracks.append(
                    MuxTrack(
                        item.codec,
                        item.clock,
                        item.extradata,
                        sample_rate=item.sample_rate,
                        channels=item.channels,
                    )
                )
                if not first:
                    first = keyframe.data
        try:
            self.init = init_segment(tracks, (0, first))
        except Exception as exc:  # PyAV refusing the parameters: this path cannot be HLS
            log.warning("%s: no HLS init segment: %s", self.live.name, exc)
            return False
        return True
