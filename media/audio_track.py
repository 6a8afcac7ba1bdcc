"""An audio track re-encoded to AAC once, whole, for HLS: the codecs HLS players cannot take
(FLAC, Vorbis, PCM, DTS, ...) become one continuous AAC stream whose packets every segment then
picks from, so segment joins have no encoder priming or gaps (re-encoding per segment would)."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av

from media.track import MediaInfo
from media.transcode import TranscodingReader, transcoded_track


@dataclass(frozen=True)
class EncodedAudio:
    """A whole track's AAC packets: (pts, dts, duration) in ``1 / sample_rate`` ticks and data."""

    stream_index: int
    sample_rate: int
    channels: int
    extradata: bytes
    packets: tuple[tuple[int, int, int, bytes], ...]

    @property
    def time_base(self) -> Fraction:
        return Fraction(1, self.sample_rate)

    @property
    def size(self) -> int:
        return sum(len(p[3]) for p in self.packets) + 32 * len(self.packets)


def encode_aac(path: str | os.PathLike[str], info: MediaInfo, index: int) -> EncodedAudio:
    """Decode track ``index`` of ``path`` and encode it to AAC (blocking; MediaError if it cannot)."""
    track = transcoded_track(info.track(index), "aac")
    packets = []
    with TranscodingReader(path, info, [index], {index: "aac"}) as reader:
        while (au := reader.read()) is not None:
            packets.append((au.pts, au.dts, au.duration, au.data))
    return EncodedAudio(
        index, track.sample_rate or 48000, track.channels or 2, track.extradata, tuple(packets)
    )


def add_aac_stream(output: Any, audio: EncodedAudio) -> Any:
    """An output stream for ``audio``'s packets, from a template that is never opened."""
    scratch: Any = av.open(io.BytesIO(), "w", format="mp4")
    try:
        stream = output.add_stream_from_template(scratch.add_stream("aac"))
    finally:
        scratch.close()
    context = stream.codec_context
    context.sample_rate = audio.sample_rate
    context.layout = {1: "mono", 2: "stereo", 6: "5.1"}.get(audio.channels, "stereo")
    context.extradata = audio.extradata
    context.time_base = audio.time_base
    stream.time_base = audio.time_base
    return stream


def packets_between(audio: EncodedAudio, start: Fraction | None, end: Fraction | None) -> list[Any]:
    """``av.Packet`` s of ``audio`` whose PTS (seconds) is in [start, end); None: open."""
    out = []
    tb = audio.time_base
    for pts, dts, duration, data in audio.packets:
        seconds = pts * tb
        if (start is not None and seconds < start) or (end is not None and seconds >= end):
            continue
        packet = av.Packet(data)
        packet.pts, packet.dts, packet.time_base = pts, dts, tb
        packet.duration = duration
        packet.is_keyframe = True
        out.append(packet)
    return out
