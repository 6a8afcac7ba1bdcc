"""A media file as RTP sees it: the tracks we can stream, their payload formats, and the SDP.

This is where ``media`` tracks meet ``sdp`` sections. Tracks with no payload format are left
out with a reason, which ``streamd probe`` prints and the server logs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from fractions import Fraction

from media.errors import MediaError, UnsupportedMedia
from media.track import MediaInfo, Track
from media.transcode import transcoded_track
from media.ts_source import ts_track
from sdp import Attribute, Connection, MediaDescription, Origin, SessionDescription
from sdp import write as write_sdp
from sdp.npt import format_npt
from streamd.rtp.payload.base import PayloadFormat, UnsupportedCodec
from streamd.rtp.payload.mp2t import Mp2tFormat
from streamd.rtp.payload.registry import payload_format_for

log = logging.getLogger(__name__)

FIRST_DYNAMIC_PAYLOAD_TYPE = 96
TOOL = "streamd"


@dataclass(frozen=True)
class StreamableTrack:
    track: Track
    payload_format: PayloadFormat
    control: str  # relative control URL, e.g. "trackID=1"


@dataclass(frozen=True)
class Presentation:
    """What DESCRIBE describes and SETUP picks tracks from."""

    name: str  # the path clients use, e.g. "holiday/beach.mp4"
    info: MediaInfo
    tracks: tuple[StreamableTrack, ...]
    excluded: tuple[tuple[Track, str], ...]
    loop: bool = False
    title: str | None = None
    mode: str = "tracks"  # or "mpegts": ``tracks`` is then one track, the whole stream
    source_info: MediaInfo | None = None  # the file's own tracks, when ``info`` is synthetic
    transcode: tuple[tuple[int, str], ...] = ()  # (track index, target codec) re-encoded on the fly

    @property
    def duration(self) -> Fraction | None:
        """Seconds; None for an endless (looping) presentation."""
        return None if self.loop else self.info.duration

    @property
    def origin(self) -> Fraction:
        """File time (seconds) of npt 0: the first video PTS (e.g. 1.4 s in many TS files)."""
        ordered = sorted(self.tracks, key=lambda t: t.track.kind != "video")
        for t in ordered:
            if t.track.start_time is not None:
                return max(Fraction(0), t.track.start_time)
        return Fraction(0)

    def track_by_control(self, control: str) -> StreamableTrack | None:
        for t in self.tracks:
            if t.control == control:
                return t
        return None

    def session_description(self, server_address: str = "0.0.0.0") -> SessionDescription:
        """The SDP a DESCRIBE returns, with relative controls (Content-Base resolves them)."""
        addrtype = "IP6" if ":" in server_address else "IP4"
        stamp = str(int(time.time()))
        attributes = [Attribute("tool", TOOL), Attribute("type", "broadcast"), Attribute("control", "*")]
        duration = self.duration
        attributes.append(Attribute("range", f"npt=0-{format_npt(duration)}" if duration else "npt=0-"))
        media = [self._media_section(t) for t in self.tracks]
        return SessionDescription(
            origin=Origin(
                username="-",
                session_id=stamp,
                session_version=stamp,
                addrtype=addrtype,
                address=server_address,
            ),
            session_name=_printable(self.title or self.name) or " ",
            connection=Connection(addrtype=addrtype, address="::" if addrtype == "IP6" else "0.0.0.0"),
            attributes=attributes,
            media=media,
        )

    @staticmethod
    def _media_section(t: StreamableTrack) -> MediaDescription:
        fmt = t.payload_format
        attributes = [Attribute("rtpmap", fmt.rtpmap())]
        fmtp = fmt.fmtp()
        if fmtp:
            attributes.append(Attribute("fmtp", fmtp))
        if t.track.kind == "video" and t.track.frame_rate:
            attributes.append(Attribute("framerate", format_npt(Fraction(t.track.frame_rate))))
        if t.track.language and t.track.language not in ("und", ""):
            attributes.append(Attribute("lang", t.track.language))
        attributes.append(Attribute("control", t.control))
        return MediaDescription(
            media=fmt.media, port=0, proto="RTP/AVP", formats=[str(fmt.payload_type)], attributes=attributes
        )

    def sdp(self, server_address: str = "0.0.0.0") -> str:
        return write_sdp(self.session_description(server_address))


def build_ts_presentation(
    name: str, info: MediaInfo, *, loop: bool = False, max_payload_size: int = 1400, title: str | None = None
) -> Presentation:
    """The whole file as one MPEG-TS over RTP (RFC 2250): a ``.ts`` as is, anything else remuxed."""
    track = ts_track(info)
    fmt = Mp2tFormat(track, max_payload_size=max_payload_size)
    synthetic = MediaInfo(info.path, info.format_name, info.duration, info.size, info.mtime_ns, (track,))
    streamable = StreamableTrack(track, fmt, "trackID=0")
    return Presentation(name, synthetic, (streamable,), (), loop, title, mode="mpegts", source_info=info)


def _printable(text: str) -> str:
    """SDP lines cannot hold control characters; a file name might."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def build_presentation(
    name: str,
    info: MediaInfo,
    *,
    loop: bool = False,
    max_payload_size: int = 1400,
    title: str | None = None,
    transcode_audio: str | None = None,
) -> Presentation:
    """Pick the streamable tracks of ``info``; raise UnsupportedMedia when none is left.

    With ``transcode_audio`` ("aac" or "opus"), audio tracks without a payload format of their
    own are offered re-encoded to that codec instead of being left out.
    """
    tracks: list[StreamableTrack] = []
    excluded: list[tuple[Track, str]] = []
    transcode: list[tuple[int, str]] = []
    tracks_info = list(info.tracks)
    for position, track in enumerate(info.tracks):
        if track.kind not in ("video", "audio"):
            excluded.append((track, f"{track.kind} tracks are not streamed"))
            continue
        payload_type = FIRST_DYNAMIC_PAYLOAD_TYPE + len(tracks)
        try:
            fmt = payload_format_for(track, payload_type, max_payload_size)
        except UnsupportedCodec as exc:
            if track.kind != "audio" or transcode_audio is None:
                excluded.append((track, str(exc)))
                continue
            try:
                track = transcoded_track(track, transcode_audio)
                fmt = payload_format_for(track, payload_type, max_payload_size)
            except (MediaError, UnsupportedCodec) as again:
                excluded.append((track, f"{exc}; transcoding failed: {again}"))
                continue
            transcode.append((track.index, transcode_audio))
            tracks_info[position] = track
        tracks.append(StreamableTrack(track, fmt, f"trackID={track.index}"))
    source_info = None
    if transcode:  # the pacing loop reads time bases from info: give it the transcoded tracks'
        source_info, info = info, replace(info, tracks=tuple(tracks_info))
    if not tracks:
        reasons = "; ".join(f"track {t.index} ({t.codec}): {why}" for t, why in excluded) or "no tracks"
        raise UnsupportedMedia(f"nothing streamable in {name}: {reasons}")
    return Presentation(
        name,
        info,
        tuple(tracks),
        tuple(excluded),
        loop,
        title,
        source_info=source_info,
        transcode=tuple(transcode),
    )
