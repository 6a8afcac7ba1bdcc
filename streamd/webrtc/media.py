"""What of a path a browser can take over WebRTC, and the file presentation it gets.

Live tracks go as the hub packetized them (the browser gets the publisher's codec or nothing);
a file's audio that browsers cannot decode over WebRTC (AAC, MP3, AC-3, ...) is re-encoded to
Opus (in chunks shared by the file's viewers: ``playback.py``).
"""

from __future__ import annotations

from dataclasses import replace

from media.errors import MediaError
from media.track import Track
from media.transcode import transcoded_track
from media.video_transcode import VideoToH264
from streamd.live.announced import RelayedFormat
from streamd.live.hub import LivePath
from streamd.rtp.payload.base import UnsupportedCodec
from streamd.rtp.payload.h264 import H264Format
from streamd.rtp.payload.registry import payload_format_for
from streamd.rtp.presentation import Presentation, StreamableTrack
from streamd.webrtc.convert import convertible, live_video_convertible
from streamd.webrtc.negotiate import BROWSER_ENCODINGS, Sendable

PASSED_AUDIO = ("opus", "pcm_mulaw", "pcm_alaw")
MAX_PAYLOAD = 1200  # bytes of a file's video packets over WebRTC: room for SRTP, TURN and tunnels


def sendable(streamable: StreamableTrack, *, live: bool) -> Sendable:
    track, fmt = streamable.track, streamable.payload_format
    profile = fmt.config.sps[0][1:4].hex() if isinstance(fmt, H264Format) else None
    why_not = None
    if track.codec not in BROWSER_ENCODINGS:
        why_not = f"browsers take no {track.codec} over WebRTC"
        if track.codec == "hevc":
            why_not += " (a live path's HEVC is not converted to H.264 yet; files' is)"
    elif track.codec == "h264" and track.has_b_frames and not live:
        why_not = "H.264 with B-frames (browsers' WebRTC decoders drop reordered frames)"
    return Sendable(track.index, track.kind, track.codec, fmt.clock_rate, profile, why_not)


def needs_h264(track: Track) -> bool:
    """Video browsers cannot take over WebRTC as it is, that a file's viewer gets converted."""
    return track.kind == "video" and (track.codec == "hevc" or (track.codec == "h264" and track.has_b_frames))


def converted_video(presentation: Presentation) -> frozenset[int]:
    """The tracks :func:`for_browsers` turned into H.264 (their source is not H.264 as it is)."""
    source = presentation.source_info
    if source is None:
        return frozenset()
    return frozenset(t.track.index for t in presentation.tracks if needs_h264(source.track(t.track.index)))


def live_sendables(live: LivePath) -> list[Sendable]:
    """The path's tracks for browsers; audio they cannot take is offered as Opus, HEVC and H.264
    with B-frames as constrained-baseline H.264 (converted once for the path by ``convert`` when
    a viewer takes it)."""
    out = []
    for t in live.tracks.values():
        a = t.announced
        if convertible(a.track) and not isinstance(a.payload_format, RelayedFormat):
            out.append(Sendable(a.track.index, "audio", "opus", 48000))
        elif live_video_convertible(t) and not isinstance(a.payload_format, RelayedFormat):
            out.append(Sendable(a.track.index, "video", "h264", 90000, "42e01f"))
        else:
            out.append(sendable(StreamableTrack(a.track, a.payload_format, a.control), live=True))
    return out


def for_browsers(presentation: Presentation) -> Presentation:
    """``presentation`` with what browsers cannot take re-encoded: audio to Opus, HEVC and H.264
    with B-frames to baseline H.264 (made by ``WebrtcPlayback``)."""
    source = presentation.source_info or presentation.info
    transcode = dict(presentation.transcode)
    tracks: list[StreamableTrack] = []
    infos = list(presentation.info.tracks)
    changed = False
    for t in presentation.tracks:
        if needs_h264(t.track):
            try:
                h264 = VideoToH264(source.track(t.track.index)).track
                fmt = payload_format_for(h264, t.payload_format.payload_type, MAX_PAYLOAD)
            except (MediaError, UnsupportedCodec):
                tracks.append(t)  # negotiation leaves it out with the reason
                continue
            changed = True
            infos = [h264 if i.index == h264.index else i for i in infos]
            tracks.append(StreamableTrack(h264, fmt, t.control))
            continue
        if t.track.kind == "video" and t.payload_format.max_payload_size > MAX_PAYLOAD:
            try:
                smaller = payload_format_for(t.track, t.payload_format.payload_type, MAX_PAYLOAD)
            except UnsupportedCodec:
                smaller = t.payload_format
            changed = changed or smaller is not t.payload_format
            tracks.append(replace(t, payload_format=smaller))
            continue
        if t.track.kind != "audio" or t.track.codec in PASSED_AUDIO:
            tracks.append(t)
            continue
        original = source.track(t.track.index)
        try:
            opus = transcoded_track(original, "opus")
            fmt = payload_format_for(opus, t.payload_format.payload_type, t.payload_format.max_payload_size)
        except (MediaError, UnsupportedCodec):
            tracks.append(t)  # negotiation leaves it out with the reason
            continue
        transcode[t.track.index] = "opus"
        infos = [opus if i.index == opus.index else i for i in infos]
        tracks.append(StreamableTrack(opus, fmt, t.control))
    if transcode == dict(presentation.transcode) and not changed:
        return presentation
    return replace(
        presentation,
        info=replace(presentation.info, tracks=tuple(infos)),
        tracks=tuple(tracks),
        source_info=source,
        transcode=tuple(transcode.items()),
    )
