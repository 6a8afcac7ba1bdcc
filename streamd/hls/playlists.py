"""HLS playlists written with the ``m3u8`` package's model (sans-I/O: data in, text out)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from m3u8.model import M3U8, Media, Playlist, Segment

from media.track import AacConfig, Track

FMP4_VERSION = 7  # EXT-X-MAP in a media playlist without I-frames needs 6; 7 for CMAF, SERVER-CONTROL
TS_VERSION = 3  # floating-point EXTINF
AUDIO_GROUP = "audio"
AUDIO_CODECS = {"mp3": "mp4a.40.34", "opus": "opus", "ac3": "ac-3", "eac3": "ec-3", "flac": "fLaC"}


@dataclass(frozen=True)
class AudioRendition:
    uri: str | None  # None: the rendition is muxed into the main variant
    name: str
    language: str | None
    default: bool
    channels: int | None


@dataclass(frozen=True)
class Variant:
    uri: str
    codecs: str
    bandwidth: int  # bits per second, the peak estimate
    resolution: tuple[int, int] | None = None
    frame_rate: float | None = None


def audio_codec(track: Track) -> str:
    """The RFC 6381 ``codecs`` value of an audio track as HLS lists it."""
    if track.codec == "aac":
        object_type = track.config.object_type if isinstance(track.config, AacConfig) else 2
        return f"mp4a.40.{object_type}"
    return AUDIO_CODECS.get(track.codec, track.codec)


def multivariant(variant: Variant, audio: Sequence[AudioRendition], version: int) -> str:
    """One variant; alternative audio renditions when the file has more than one audio track."""
    playlist = M3U8()
    playlist.version = version
    playlist.is_independent_segments = True
    info: dict[str, object] = {"bandwidth": variant.bandwidth, "codecs": variant.codecs}
    if variant.resolution is not None:
        info["resolution"] = f"{variant.resolution[0]}x{variant.resolution[1]}"
    if variant.frame_rate:
        info["frame_rate"] = round(variant.frame_rate, 3)
    if len(audio) > 1:
        info["audio"] = AUDIO_GROUP
        for rendition in audio:
            playlist.add_media(
                Media(
                    uri=rendition.uri,
                    type="AUDIO",
                    group_id=AUDIO_GROUP,
                    language=rendition.language,
                    name=rendition.name,
                    default="YES" if rendition.default else "NO",
                    autoselect="YES",
                    channels=str(rendition.channels) if rendition.channels else None,
                )
            )
    playlist.add_playlist(Playlist(uri=variant.uri, stream_info=info, media=playlist.media, base_uri=None))
    return playlist.dumps()


def media_playlist(
    durations: Sequence[Fraction],
    segment_uri: Callable[[int], str],
    init_uri: str | None,
    target_duration: int,
    version: int,
) -> str:
    """A VOD media playlist: every segment from the start, then ``#EXT-X-ENDLIST``."""
    playlist = M3U8()
    playlist.version = version
    playlist.is_independent_segments = True
    playlist.target_duration = target_duration
    playlist.media_sequence = 0
    playlist.playlist_type = "vod"
    playlist.is_endlist = True
    init = {"uri": init_uri} if init_uri is not None else None
    for number, duration in enumerate(durations):
        seconds = round(float(duration), 6)
        uri = segment_uri(number)
        playlist.add_segment(Segment(uri=uri, duration=seconds, init_section=init, base_uri=None))
    return playlist.dumps()
