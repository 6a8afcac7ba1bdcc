"""Probe a media file with PyAV: its tracks and the codec configuration RTP/SDP need.

Probing never decodes. Codec configuration comes from the extradata; only when that is empty
(raw .h264, ADTS audio, some MPEG-TS) are a few packets demuxed to find the SPS/PPS or the first
ADTS header.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from media import aac, h264, h265
from media.errors import MediaError, UnsupportedMedia
from media.track import AacConfig, CodecConfig, H264Config, H265Config, MediaInfo, Track

# Enough for the first keyframe of an MPEG-TS joined mid-GOP, yet still a few milliseconds.
PROBE_PACKET_LIMIT = 300
_AV_TIME_BASE = 1_000_000
_NAL_CODECS = ("h264", "hevc")
_MKV_DURATION = re.compile(r"^(\d+):(\d{2}):(\d{2})(?:\.(\d{1,9}))?$")


def open_container(path: str | os.PathLike[str]) -> Any:
    """``av.open`` for reading, turning every failure into a MediaError that says why."""
    p = Path(path)
    if not p.exists():
        raise MediaError(f"{p}: no such file")
    if p.is_dir():
        raise MediaError(f"{p}: is a directory, not a media file")
    try:
        return av.open(str(p), "r")
    except av.FFmpegError as exc:
        raise MediaError(f"{p}: not a media file PyAV can open ({exc})") from exc
    except OSError as exc:
        raise MediaError(f"{p}: cannot read ({exc})") from exc


def probe(path: str | os.PathLike[str]) -> MediaInfo:
    """Describe the file at ``path``. Raises MediaError (UnsupportedMedia if it has no streams)."""
    p = Path(path)
    container = open_container(p)
    try:
        streams = list(container.streams)
        if not streams:
            raise UnsupportedMedia(f"{p}: the file holds no streams")
        tracks = [_track(s) for s in streams]
        tracks = _configs_from_packets(container, streams, tracks)
        stat = p.stat()
        return MediaInfo(
            path=str(p),
            format_name=container.format.name,
            duration=_whole_audio_frames(
                _seconds(container.duration, Fraction(1, _AV_TIME_BASE)), streams, tracks
            ),
            size=stat.st_size,
            mtime_ns=stat.st_mtime_ns,
            tracks=tuple(tracks),
        )
    except av.FFmpegError as exc:
        raise MediaError(f"{p}: error while probing ({exc})") from exc
    finally:
        container.close()


def _track(stream: Any) -> Track:
    # Data and attachment streams lack most attributes (and may have no codec context).
    cc = getattr(stream, "codec_context", None)
    kind = stream.type if stream.type in ("video", "audio", "subtitle") else "data"
    codec = getattr(cc, "name", None) or "unknown"
    if kind in (
        "video",
        "audio",
    ):  # the codec's name ("av1", "mp3"), not its decoder's ("libdav1d", "mp3float")
        codec = getattr(getattr(cc, "codec", None), "canonical_name", None) or codec
    time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, _AV_TIME_BASE)
    extradata = bytes(cc.extradata or b"") if cc is not None else b""
    notes: list[str] = []
    config = _config_from_extradata(codec, extradata, notes)
    duration = _seconds(stream.duration, time_base) or _mkv_duration(stream.metadata)
    language = stream.metadata.get("language")
    fields: dict[str, Any] = {}
    if kind == "video" and cc is not None:
        rate = stream.average_rate or stream.guessed_rate
        fields = {
            "width": cc.width or None,
            "height": cc.height or None,
            "frame_rate": Fraction(rate) if rate else None,
            "has_b_frames": bool(cc.has_b_frames),
            "pixel_format": getattr(cc, "pix_fmt", None) or None,
        }
    elif kind == "audio" and cc is not None:
        fields = {"sample_rate": cc.sample_rate or None, "channels": cc.layout.nb_channels or None}
    bit_rate = getattr(stream, "bit_rate", None) or getattr(cc, "bit_rate", None)
    return Track(
        index=stream.index,
        kind=kind,
        codec=codec,
        time_base=time_base,
        duration=duration,
        start_time=_seconds(stream.start_time, time_base),
        bit_rate=bit_rate or None,
        language=language if language and language != "und" else None,
        extradata=extradata,
        config=config,
        profile=getattr(cc, "profile", None) or None,
        notes=tuple(notes),
        **fields,
    )


def _config_from_extradata(codec: str, extradata: bytes, notes: list[str]) -> CodecConfig | None:
    try:
        if codec == "h264":
            return h264.config_from_extradata(extradata)
        if codec == "hevc":
            return h265.config_from_extradata(extradata)
        if codec == "aac" and extradata:
            return aac.parse_audio_specific_config(extradata)
    except MediaError as exc:
        notes.append(f"unusable extradata: {exc}")
    return None


def _configs_from_packets(container: Any, streams: list[Any], tracks: list[Track]) -> list[Track]:
    """Fill missing H.264/H.265 configs from the first parameter sets, AAC's from the first ADTS header.

    AAC tracks are also checked when they have a config, since MPEG-TS keeps ADTS headers in the
    packets even when FFmpeg provides an AudioSpecificConfig.
    """
    wanted = {
        t.index
        for t in tracks
        if (t.codec in _NAL_CODECS and t.config is None)
        or (t.codec == "aac" and (t.config is None or container.format.name in ("mpegts", "aac")))
    }
    if not wanted:
        return tracks
    found: dict[int, CodecConfig] = {}
    nals: dict[int, list[bytes]] = {i: [] for i in wanted}
    by_index = {t.index: t for t in tracks}
    for count, packet in enumerate(container.demux([s for s in streams if s.index in wanted])):
        if count >= PROBE_PACKET_LIMIT or not wanted:
            break
        if packet.size == 0:
            continue
        index = packet.stream.index
        if index not in wanted:
            continue
        data = bytes(packet)
        track = by_index[index]
        if track.codec == "aac":
            wanted.discard(index)
            if aac.looks_like_adts(data):
                try:
                    header = aac.parse_adts_header(data)
                except MediaError:
                    continue
                if isinstance(track.config, AacConfig):
                    found[index] = replace(track.config, adts_input=True)
                else:
                    asc = aac.audio_specific_config_from_adts(header)
                    found[index] = replace(aac.parse_audio_specific_config(asc), adts_input=True)
        else:
            nals[index].extend(_packet_nals(data, track.extradata))
            cfg = _nal_config(track.codec, nals[index], 4 if track.extradata[:1] == b"\x01" else None)
            if cfg is not None:
                found[index] = cfg
                wanted.discard(index)
    out = []
    for t in tracks:
        cfg = found.get(t.index)
        if cfg is None:
            if t.codec in ("h264", "hevc", "aac") and t.config is None:
                t = replace(t, notes=(*t.notes, "codec configuration not found in the first packets"))
            out.append(t)
            continue
        source = "first ADTS header" if isinstance(cfg, AacConfig) else "first keyframe"
        if isinstance(cfg, H264Config | H265Config) or t.config is None:
            t = replace(t, config=cfg, notes=(*t.notes, f"configuration from the {source}"))
        else:
            t = replace(t, config=cfg)
        out.append(t)
    return out


def _packet_nals(data: bytes, extradata: bytes) -> list[bytes]:
    """NAL units of a packet: Annex B normally; length-prefixed (4 bytes) when the track has
    avcC/hvcC extradata that held no parameter sets, which only a few muxers write."""
    if extradata[:1] == b"\x01":
        try:
            return h264.split_length_prefixed(data, 4)
        except MediaError:
            return []
    return h264.split_annexb(data)


def _nal_config(codec: str, nals: list[bytes], length_size: int | None) -> H264Config | H265Config | None:
    if codec == "hevc":
        hevc = h265.config_from_nals(nals, length_size)
        return hevc if h265.complete(hevc) else None
    avc = h264.config_from_nals(nals, length_size)
    return avc if avc.sps and avc.pps else None


def _whole_audio_frames(
    duration: Fraction | None, streams: list[Any], tracks: list[Track]
) -> Fraction | None:
    """The duration of an audio-only file, made to cover its last packet's end (npt).

    The container's duration is the audio's (gapless info trims the encoder's padding: an MP3's
    LAME tag says 1 s), but every packet is a whole frame (MP3: 1152 samples), so the last one
    runs past it (1.032 s of frames at 48 kHz) and a client timing by RTP timestamps (GStreamer
    rtspsrc) drops what lies past the Range end. Reading the last packet would mean demuxing the
    whole file (an MP3 seek is only a guess from the bit rate), so the end is rounded up to whole
    frames on the frame grid, which starts at file time 0 (or the first packet, earlier), and
    taken from the presentation's origin (its start time). Files with video: unchanged (frames
    are not on such a grid, and the video usually ends last)."""
    if duration is None or not tracks or any(t.kind != "audio" for t in tracks):
        return duration
    end = duration
    for stream, track in zip(streams, tracks, strict=True):
        frame_size = getattr(getattr(stream, "codec_context", None), "frame_size", 0) or 0
        if frame_size <= 0 or not track.sample_rate:
            continue
        frame = Fraction(frame_size, track.sample_rate)
        start = track.start_time or Fraction(0)
        grid = min(start, Fraction(0))
        frames = -((grid - start - duration) // frame)  # ceil
        end = max(end, grid + frames * frame - max(start, Fraction(0)))
    return end


def _seconds(value: int | None, time_base: Fraction) -> Fraction | None:
    return None if value is None else value * time_base


def _mkv_duration(metadata: dict[str, str]) -> Fraction | None:
    """Matroska muxers put a stream's length in a ``DURATION`` tag like ``00:00:02.000000000``."""
    match = _MKV_DURATION.match(metadata.get("DURATION", "").strip())
    if not match:
        return None
    hours, minutes, secs, frac = match.groups()
    value = Fraction(int(hours) * 3600 + int(minutes) * 60 + int(secs))
    if frac:
        value += Fraction(int(frac), 10 ** len(frac))
    return value
