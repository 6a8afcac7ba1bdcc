"""Write already-coded access units to an MP4 or Matroska file with PyAV: remux, never re-encode.

Streams are made from a codec-context template that is never opened, so no encoder runs; the
codec parameters a player needs come from us: H.264/H.265 parameter sets as Annex B extradata
(FFmpeg's MP4 and Matroska muxers turn that into avcC/hvcC and the Annex B packets into
length-prefixed ones), the AAC AudioSpecificConfig, the Opus head. Width and height, which the
muxers insist on, come from decoding the first keyframe once (:func:`video_size`).
Blocking I/O: call it from a worker thread. The output is a file, or any writable file object
(fragmented MP4 for a browser watching a live path).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import av

from media.errors import MediaError

FORMATS = {"mp4": "mp4", "mkv": "matroska"}
MUXABLE = ("h264", "hevc", "aac", "opus")
FRAGMENT_SECONDS = 1.0  # a fragment at least this often even with long GOPs (frag_duration)
# MP4 that plays as it arrives, from a pipe: an empty index first, then a fragment per keyframe
FRAGMENTED_MP4 = {
    "movflags": "frag_keyframe+empty_moov+default_base_moof",
    "frag_duration": str(int(FRAGMENT_SECONDS * 1_000_000)),
}
_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


@dataclass(frozen=True)
class MuxTrack:
    """One stream of the file: codec, the clock its timestamps count in, and its parameters."""

    codec: str  # one of MUXABLE
    clock: int  # ticks per second of the pts/dts given to write()
    extradata: bytes = b""
    width: int = 0
    height: int = 0
    sample_rate: int = 0
    channels: int = 0

    @property
    def kind(self) -> str:
        return "video" if self.codec in ("h264", "hevc") else "audio"


def opus_head(channels: int, pre_skip: int = 0, input_rate: int = 48000) -> bytes:
    """An OpusHead (RFC 7845 5.1), mapping family 0: what MP4/Matroska carry as Opus extradata."""
    if channels not in (1, 2):
        raise MediaError(f"Opus mapping family 0 has 1 or 2 channels, not {channels}")
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, pre_skip, input_rate, 0, 0)


def video_size(codec: str, annexb_keyframe: bytes) -> tuple[int, int] | None:
    """Width and height of a keyframe (Annex B, parameter sets included), by decoding it; None if it fails."""
    try:
        decoder: Any = av.CodecContext.create(codec, "r")
        decoder.thread_count = 1
        frames = list(decoder.decode(av.Packet(annexb_keyframe)))
        frames += list(decoder.decode(None))
    except (av.FFmpegError, ValueError, EOFError):
        return None
    if not frames or not frames[0].width or not frames[0].height:
        return None
    return frames[0].width, frames[0].height


class FileMuxer:
    """One output. ``write`` in decode order per track (DTS strictly growing), then ``close``.

    ``target`` is a file path, or a file object for fragmented MP4 (``container_format`` "mp4").
    """

    def __init__(self, target: Path | BinaryIO, container_format: str, tracks: list[MuxTrack]) -> None:
        if container_format not in FORMATS:
            raise MediaError(f"cannot record to {container_format!r} (one of {', '.join(FORMATS)})")
        self.path = target if isinstance(target, Path) else None
        self.tracks = tracks
        self._clocks = [Fraction(1, t.clock) for t in tracks]
        options: dict[str, str] = {}
        if self.path is None:
            if container_format != "mp4":
                raise MediaError("a stream (not a file) is written as fragmented MP4 only")
            options = dict(FRAGMENTED_MP4)
        elif container_format == "mp4":
            options = {"movflags": "+faststart"}  # the index (moov) first: plays while it downloads
        where: Any = str(target) if self.path is not None else target
        self._output: Any = av.open(where, "w", format=FORMATS[container_format], options=options)
        try:
            self._streams = self._add_streams(FORMATS[container_format])
        except BaseException:
            self._output.close()
            raise

    def _add_streams(self, format_name: str) -> list[Any]:
        scratch: Any = av.open(io.BytesIO(), "w", format=format_name)  # templates: never opened
        try:
            streams = []
            for track, clock in zip(self.tracks, self._clocks, strict=True):
                if track.codec not in MUXABLE:
                    raise MediaError(f"cannot record {track.codec}")
                try:
                    template = scratch.add_stream(track.codec)
                except (av.FFmpegError, ValueError) as exc:
                    raise MediaError(f"{format_name} cannot take {track.codec}: {exc}") from exc
                stream = self._output.add_stream_from_template(template)
                context = stream.codec_context
                if track.kind == "video":
                    context.width, context.height = track.width, track.height
                else:
                    context.sample_rate = track.sample_rate
                    layout = _LAYOUTS.get(track.channels)
                    if layout is None:
                        raise MediaError(f"cannot record {track.channels} audio channels")
                    context.layout = layout
                if track.extradata:
                    context.extradata = track.extradata
                context.time_base = clock
                stream.time_base = clock
                streams.append(stream)
            return streams
        finally:
            scratch.close()

    def write(self, track: int, pts: int, dts: int, data: bytes, keyframe: bool, duration: int = 0) -> None:
        """One unit; ``duration`` (ticks, 0: unknown) lets the file end where its last frame does."""
        packet = av.Packet(data)
        packet.stream = self._streams[track]
        packet.time_base = self._clocks[track]
        packet.pts, packet.dts = pts, dts
        packet.is_keyframe = keyframe
        if duration > 0:
            packet.duration = duration
        self._output.mux(packet)

    def close(self) -> None:
        """Write the trailer (the MP4 moov, the Matroska cues) and close the file."""
        self._output.close()
