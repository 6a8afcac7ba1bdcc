"""Human-readable reports on a file: what ``streamd probe`` and ``streamd sdp`` print."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from media.errors import UnsupportedMedia
from media.probe import probe
from media.track import MediaInfo, Track
from streamd.config import PathSettings
from streamd.rtp.presentation import Presentation, build_presentation, build_ts_presentation


def _seconds(value: Fraction | None) -> str:
    return "unknown duration" if value is None else f"{float(value):.3f} s"


def _track_facts(track: Track) -> str:
    facts = [track.kind, track.codec]
    if track.profile:
        facts.append(f"({track.profile})")
    if track.width and track.height:
        facts.append(f"{track.width}x{track.height}")
    if track.frame_rate:
        facts.append(f"{float(track.frame_rate):.3g} fps")
    if track.has_b_frames:
        facts.append("B-frames")
    if track.sample_rate:
        facts.append(f"{track.sample_rate} Hz")
    if track.channels:
        facts.append(f"{track.channels} ch")
    if track.language:
        facts.append(f"lang={track.language}")
    facts.append(_seconds(track.duration))
    return " ".join(facts)


def _presentation(file: Path, info: MediaInfo, settings: PathSettings) -> Presentation:
    """What the server would stream for this file under these path settings."""
    if settings.mode == "mpegts":
        return build_ts_presentation(file.name, info)
    return build_presentation(file.name, info, transcode_audio=settings.transcode_audio)


def print_probe(file: Path, settings: PathSettings | None = None, path: str | None = None) -> str:
    """Tracks, and what is streamed, for ``file`` served as ``path`` with ``settings``."""
    settings = settings or PathSettings()
    info = probe(file)
    lines = [f"{file}: {info.format_name}, {_seconds(info.duration)}, {info.size} bytes"]
    applied = [f"mode={settings.mode}"] if settings.mode != "tracks" else []
    if settings.transcode_audio:
        applied.append(f"transcode_audio={settings.transcode_audio}")
    if applied:
        lines.append(f"  path settings{f' for {path!r}' if path else ''}: {', '.join(applied)}")
    try:
        presentation = _presentation(file, info, settings)
        streamed = {t.track.index: t for t in presentation.tracks}
        excluded = dict((t.index, why) for t, why in presentation.excluded)
    except UnsupportedMedia:
        streamed = {}
        excluded = {}
        for track in info.tracks:
            excluded[track.index] = "no RTP payload format"
        from streamd.rtp.payload.base import UnsupportedCodec
        from streamd.rtp.payload.registry import payload_format_for

        for track in info.tracks:
            try:
                payload_format_for(track, 96)
            except UnsupportedCodec as exc:
                excluded[track.index] = str(exc)
            except Exception as exc:
                excluded[track.index] = str(exc)
            if track.kind not in ("video", "audio"):
                excluded[track.index] = f"{track.kind} tracks are not streamed"
    for track in info.tracks:
        lines.append(f"  track {track.index}: {_track_facts(track)}")
        if track.index in streamed:
            s = streamed[track.index]
            lines.append(f"    -> streamed as {s.payload_format.rtpmap()} ({s.control})")
        else:
            lines.append(f"    -> not streamed: {excluded.get(track.index, 'unknown reason')}")
        for note in track.notes:
            lines.append(f"    note: {note}")
    if not streamed:
        lines.append("nothing in this file can be streamed (DESCRIBE answers 415)")
    return "\n".join(lines)


def describe_file(file: Path, address: str, settings: PathSettings | None = None) -> str:
    return _presentation(file, probe(file), settings or PathSettings()).sdp(address)
