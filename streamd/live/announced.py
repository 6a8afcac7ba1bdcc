"""What a publisher's ANNOUNCE describes: one entry per ``m=`` section, as tracks we can serve.

Formats we know (H.264, H.265, AAC, Opus, ...) get a real ``Track`` and payload format, so
incoming RTP is depacketized into access units and packetized again once for every reader (and
for recording). AAC sent as ``MP4A-LATM`` (GStreamer) is taken apart too and served as
``mpeg4-generic``. Anything else is relayed as RTP unchanged, with its rtpmap/fmtp copied.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, replace
from fractions import Fraction

from media.aac import parse_audio_specific_config
from media.errors import MediaError
from media.h264 import config_from_nals as h264_config
from media.h265 import config_from_nals as h265_config
from media.latm import StreamMuxConfig, parse_stream_mux_config
from media.track import Track
from sdp import MediaDescription, format_rtpmap, static_rtpmap
from streamd.rtp.payload.aac import header_widths
from streamd.rtp.payload.base import PayloadFormat, UnsupportedCodec
from streamd.rtp.payload.registry import payload_format_for
from streamd.rtsp.errors import RtspError

MAX_CLOCK_RATE = 10_000_000  # RTP clocks are 8 kHz..192 kHz for audio, 90 kHz for video
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # copied into every reader's SDP: never control bytes
CODEC_NAMES = {"h264": "h264", "h265": "hevc", "mpeg4-generic": "aac", "opus": "opus"}


class RelayedFormat(PayloadFormat):
    """A payload we do not take apart: announced attributes copied, packets forwarded as they are."""

    def __init__(self, media: str, payload_type: int, rtpmap: str, fmtp: str | None, clock_rate: int) -> None:
        self.media = media
        self.encoding_name = rtpmap.split("/")[0]
        self.clock_rate = clock_rate
        self._rtpmap = f"{payload_type} {rtpmap}"
        self._fmtp = f"{payload_type} {fmtp}" if fmtp else None
        super().__init__(payload_type, 65000)

    def rtpmap(self) -> str:
        return self._rtpmap

    def fmtp(self) -> str | None:
        return self._fmtp

    def packetize(self, au):  # type: ignore[no-untyped-def]
        return [(au.data, True)]

    def depacketizer(self):  # type: ignore[no-untyped-def]
        raise NotImplementedError("relayed payloads are not depacketized")


@dataclass(frozen=True)
class AnnouncedTrack:
    index: int
    control: str  # as the publisher names it in its SETUP (e.g. "streamid=0")
    track: Track
    payload_format: PayloadFormat
    depacketize: bool  # False: relayed as RTP unchanged
    latm: StreamMuxConfig | None = None  # AAC arriving as MP4A-LATM, served as mpeg4-generic


def announced_tracks(media: list[MediaDescription]) -> list[AnnouncedTrack]:
    """Tracks of an announced SDP; 400 when it describes nothing usable."""
    tracks = []
    for index, section in enumerate(media):
        if section.media not in ("video", "audio") or not section.formats:
            continue
        first = section.formats[0]
        pt = int(first) if first.isascii() and first.isdigit() and len(first) <= 3 else -1
        if not 0 <= pt <= 127:
            raise RtspError(400, f"announced m={section.media} has no valid payload type")
        rtpmap = section.rtpmap(pt) or static_rtpmap(pt)  # IP cameras often send "m=audio 0 RTP/AVP 0"
        control = section.control or f"trackID={index}"
        if rtpmap is None:
            raise RtspError(
                400, f"announced payload type {pt} without a=rtpmap (only static types may omit it)"
            )
        if not 0 < rtpmap.clock_rate <= MAX_CLOCK_RATE:
            raise RtspError(400, f"announced payload type {pt} has clock rate {rtpmap.clock_rate}")
        attributes = [*section.get_all("rtpmap"), *section.get_all("fmtp")]
        if any(v and _CONTROL.search(v) for v in attributes):
            raise RtspError(400, f"announced m={section.media}: control character in a=rtpmap or a=fmtp")
        fmtp = dict(section.fmtp(pt))
        if rtpmap.encoding_name.lower() == "mpeg4-generic":
            try:
                header_widths({k.lower(): v for k, v in fmtp.items()})
            except ValueError as exc:
                raise RtspError(400, f"announced mpeg4-generic: {exc}") from None
        track = _track(
            index, section.media, rtpmap.encoding_name.lower(), rtpmap.clock_rate, rtpmap.channels, fmtp
        )
        fmt: PayloadFormat | None = None
        latm = _latm_config(rtpmap.encoding_name, fmtp)
        if latm is not None:
            track = _track(index, "audio", "mpeg4-generic", rtpmap.clock_rate, rtpmap.channels, {})
            track = replace(track, config=parse_audio_specific_config(latm.audio_specific_config))
        if track.codec in CODEC_NAMES.values():
            try:
                fmt = payload_format_for(track, pt)
            except (UnsupportedCodec, ValueError):
                fmt = None
            if latm is not None and (fmt is None or fmt.clock_rate != rtpmap.clock_rate):
                fmt, latm = None, None  # timestamps would need rescaling: relay it as it is
        raw_fmtp = [v for v in section.get_all("fmtp") if v and v.split(" ", 1)[0] == str(pt)]
        if fmt is None:
            value = format_rtpmap(rtpmap).split(" ", 1)[1]
            fmtp_value = raw_fmtp[0].split(" ", 1)[1] if raw_fmtp and " " in raw_fmtp[0] else None
            fmt = RelayedFormat(section.media, pt, value, fmtp_value, rtpmap.clock_rate)
            tracks.append(AnnouncedTrack(index, control, track, fmt, False))
        else:
            tracks.append(AnnouncedTrack(index, control, track, fmt, True, latm))
    if not tracks:
        raise RtspError(400, "the announced SDP has no audio or video section")
    return tracks


def _latm_config(encoding: str, fmtp: dict[str, str]) -> StreamMuxConfig | None:
    """The StreamMuxConfig of an ``MP4A-LATM`` track with its config in the SDP, else None."""
    lowered = {k.lower(): v for k, v in fmtp.items()}
    if encoding.lower() != "mp4a-latm" or lowered.get("cpresent", "1").strip() != "0":
        return None
    try:
        config = parse_stream_mux_config(bytes.fromhex(lowered.get("config", "")))
        parse_audio_specific_config(config.audio_specific_config)
    except (MediaError, ValueError):
        return None
    return config


def _track(
    index: int, kind: str, encoding: str, clock: int, channels: int | None, fmtp: dict[str, str]
) -> Track:
    codec = CODEC_NAMES.get(encoding, encoding)
    config = None
    lowered = {k.lower(): v for k, v in fmtp.items()}
    try:
        if codec == "h264" and "sprop-parameter-sets" in lowered:
            config = h264_config(_b64_list(lowered["sprop-parameter-sets"]))
        elif codec == "hevc" and "sprop-sps" in lowered:
            nals = _b64_list(",".join(lowered.get(k, "") for k in ("sprop-vps", "sprop-sps", "sprop-pps")))
            config = h265_config(nals)
        elif codec == "aac" and "config" in lowered:
            config = parse_audio_specific_config(bytes.fromhex(lowered["config"]))
    except (MediaError, ValueError, binascii.Error):
        config = None
    return Track(
        index=index,
        kind=kind,
        codec=codec,
        time_base=Fraction(1, clock),
        sample_rate=clock if kind == "audio" else None,
        channels=channels if kind == "audio" else None,
        config=config,
    )


def _b64_list(value: str) -> list[bytes]:
    return [base64.b64decode(part + "=" * (-len(part) % 4)) for part in value.split(",") if part.strip()]
