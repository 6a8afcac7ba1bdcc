"""Audio transcoding on the fly, for tracks whose codec has no RTP payload format (Vorbis, FLAC,
DTS, ...): decode with PyAV, resample, and encode to AAC or Opus, access unit by access unit.

Used when a path sets ``transcode_audio``; video is never re-encoded.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from dataclasses import replace
from fractions import Fraction
from typing import Any

import av
from av.audio.fifo import AudioFifo

from media.aac import build_audio_specific_config, parse_audio_specific_config
from media.access_unit import AccessUnit
from media.errors import MediaError
from media.reader import MediaReader
from media.track import MediaInfo, Track

TARGETS = ("aac", "opus")
AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)


def output_format(track: Track, target: str) -> tuple[int, str]:
    """Sample rate and channel layout of the transcoded track (Opus: 48 kHz; at most stereo)."""
    return encoder_format(track.sample_rate, track.channels, target)


def encoder_format(sample_rate: int | None, channels: int | None, target: str) -> tuple[int, str]:
    """A rate and a named layout the ``target`` encoder opens with, from a source's rate and
    channel count (a WAV without a channel mask has no layout name the encoder knows)."""
    count = min(channels or 2, 2 if target == "opus" else 6)
    layout = {1: "mono", 2: "stereo", 6: "5.1"}.get(count, "stereo")
    if target == "opus":
        return 48000, layout
    rate = sample_rate if sample_rate in AAC_RATES else 48000
    return rate, layout


# FFmpeg's AAC encoder ends its AudioSpecificConfig with an explicit "no SBR" sync extension
# (syncExtensionType 0x2b7, SBR object type, sbrPresentFlag 0), so describing its output exactly
# means writing the same three bytes after the two of the plain configuration.
_NO_SBR_SYNC_EXTENSION = b"\x56\xe5\x00"
OPUS_PRE_SKIP = 312  # samples libopus's encoder delay asks players to drop (RFC 7845 5.1)
_CHANNEL_CONFIGS = {"mono": 1, "stereo": 2, "5.1": 6}
_ENCODERS = {"aac": "aac", "opus": "libopus"}


def transcoded_track(source: Track, target: str, bit_rate: int = 128_000) -> Track:
    """What ``AudioTranscoder(source, target)`` will put out, worked out without opening codecs.

    Describing a file (DESCRIBE, ``streamd probe``) must stay cheap: this checks only that the
    decoder and encoder exist and builds the configuration the encoder is known to write.
    """
    if target not in TARGETS:
        raise MediaError(f"cannot transcode to {target!r}: choose one of {', '.join(TARGETS)}")
    for name, mode in ((source.codec, "r"), (_ENCODERS[target], "w")):
        try:
            av.codec.Codec(name, mode)
        except (av.FFmpegError, ValueError) as exc:
            kind = "decoder" if mode == "r" else "encoder"
            raise MediaError(f"cannot transcode {source.codec} to {target}: no {kind} {name!r}") from exc
    rate, layout = output_format(source, target)
    channels = _CHANNEL_CONFIGS[layout]
    if target == "aac":
        extradata = build_audio_specific_config(2, rate, channels) + _NO_SBR_SYNC_EXTENSION
        config = parse_audio_specific_config(extradata)
    else:
        extradata = b"OpusHead" + struct.pack("<BBHIhB", 1, channels, OPUS_PRE_SKIP, rate, 0, 0)
        config = None
    return replace(
        source,
        codec=target,
        time_base=Fraction(1, rate),
        sample_rate=rate,
        channels=channels,
        extradata=extradata,
        config=config,
        bit_rate=bit_rate,
        notes=(*source.notes, f"transcoded from {source.codec} to {target}"),
    )


class AudioTranscoder:
    """Decodes one source track and encodes it again; ``track`` describes what comes out."""

    def __init__(self, source: Track, target: str, bit_rate: int = 128_000) -> None:
        if target not in TARGETS:
            raise MediaError(f"cannot transcode to {target!r}: choose one of {', '.join(TARGETS)}")
        self.source = source
        self.target = target
        self.rate, self.layout = output_format(source, target)
        self._bit_rate = bit_rate
        self._open()
        self.track = transcoded_track(source, target, bit_rate)

    def _open(self) -> None:
        try:
            self._decoder: Any = av.CodecContext.create(self.source.codec, "r")
            if self.source.extradata:
                self._decoder.extradata = self.source.extradata
            if self.source.sample_rate:
                self._decoder.sample_rate = self.source.sample_rate
            encoder: Any = av.CodecContext.create("libopus" if self.target == "opus" else "aac", "w")
            encoder.sample_rate = self.rate
            encoder.layout = self.layout
            encoder.format = "s16" if self.target == "opus" else "fltp"
            encoder.time_base = Fraction(1, self.rate)
            encoder.bit_rate = self._bit_rate
            encoder.open()
        except (av.FFmpegError, ValueError) as exc:
            raise MediaError(f"cannot transcode {self.source.codec} to {self.target}: {exc}") from exc
        self._encoder = encoder
        self._resampler = av.AudioResampler(format=encoder.format.name, layout=self.layout, rate=self.rate)
        self._fifo = AudioFifo()
        self._next_pts: int | None = None

    def reset(self) -> None:
        """After a seek: forget buffered audio, start timestamps from the next input."""
        self._open()

    def feed(self, au: AccessUnit) -> list[AccessUnit]:
        """One source AU in, zero or more encoded AUs out (timestamps in 1/rate)."""
        if self._next_pts is None:
            self._next_pts = round(au.pts * self.source.time_base * self.rate)
        packet = av.Packet(au.data)
        packet.pts, packet.dts, packet.time_base = au.pts, au.dts, self.source.time_base
        try:
            frames = self._decoder.decode(packet)
        except av.FFmpegError:
            return []  # a damaged packet: skip it, as a player would
        out: list[AccessUnit] = []
        for frame in frames:
            frame.pts = None
            for resampled in self._resampler.resample(frame):
                self._fifo.write(resampled)
            out += self._drain(final=False)
        return out

    def flush(self) -> list[AccessUnit]:
        try:
            for resampled in self._resampler.resample(None):
                self._fifo.write(resampled)
        except (av.FFmpegError, ValueError):
            pass
        return self._drain(final=True)

    def _drain(self, *, final: bool) -> list[AccessUnit]:
        size = self._encoder.frame_size or 1024
        out: list[AccessUnit] = []
        while self._fifo.samples >= size or (final and self._fifo.samples):
            frame = self._fifo.read(min(size, self._fifo.samples))
            frame.pts = self._next_pts
            frame.time_base = Fraction(1, self.rate)
            self._next_pts = (self._next_pts or 0) + frame.samples
            out += self._encode(frame)
        if final:
            out += self._encode(None)
        return out

    def _encode(self, frame: Any) -> list[AccessUnit]:
        try:
            packets = self._encoder.encode(frame)
        except (av.FFmpegError, ValueError) as exc:
            raise MediaError(f"{self.target} encoder failed: {exc}") from exc
        return [
            AccessUnit(
                self.source.index,
                p.pts,
                p.dts if p.dts is not None else p.pts,
                True,
                bytes(p),
                duration=p.duration or 0,
            )
            for p in packets
            if p.pts is not None
        ]


class TranscodingReader:
    """A MediaReader whose chosen audio tracks come out transcoded; everything else passes through."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        info: MediaInfo,
        stream_indices: Iterable[int],
        transcode: dict[int, str],
        *,
        loop: bool = False,
    ) -> None:
        indices = list(stream_indices)
        self._reader = MediaReader(path, info, indices, loop=loop)
        self._coders = {i: AudioTranscoder(info.track(i), t) for i, t in transcode.items() if i in indices}
        self._out: list[AccessUnit] = []
        self._ended = False

    def read(self) -> AccessUnit | None:
        while not self._out:
            au = self._reader.read()
            if au is None:
                if self._ended:
                    return None
                self._ended = True
                for coder in self._coders.values():
                    self._out += coder.flush()
                if not self._out:
                    return None
                break
            coder = self._coders.get(au.stream_index)
            if coder is None:
                return au
            self._out += coder.feed(au)
        return self._out.pop(0)

    def seek(self, seconds: Fraction) -> Fraction:
        actual = self._reader.seek(seconds)
        self._out.clear()
        self._ended = False
        for coder in self._coders.values():
            coder.reset()
        return actual

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> TranscodingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
