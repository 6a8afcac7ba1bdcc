"""Text formats: SDP (ANNOUNCE bodies, a relay's DESCRIBE answers) and what an announce makes of
it, the RTSP-over-HTTP tunnel's base64 stream, and the configuration file."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from sdp import SdpParseError
from sdp import parse as parse_sdp
from sdp import write as write_sdp
from streamd.config import ConfigError, load_config
from streamd.http.b64stream import Base64Error, Base64Stream
from streamd.live.announced import announced_tracks
from streamd.live.hub import LivePath
from streamd.live.live_presentation import live_presentation
from streamd.rtsp.errors import RtspError

from .common import chunks


def fuzz_sdp(data: bytes) -> None:
    """``sdp.parse``: a description or SdpParseError; the per-format accessors give a value or
    ValueError; written out again (the writer refuses NUL and a
    bare CR, which the lenient parser keeps) it
    parses to as many media sections."""
    try:
        description = parse_sdp(data)
    except SdpParseError:
        return
    for media in description.media:
        for pt in media.formats:
            media.rtpmap(pt)
            with contextlib.suppress(ValueError):
                media.fmtp(pt)
    try:
        written = write_sdp(description)
    except ValueError:
        assert b"\x00" in data or b"\r" in data.replace(b"\r\n", b"")
        return
    assert len(parse_sdp(written).media) == len(description.media)


def fuzz_announce(data: bytes) -> None:
    """An ANNOUNCE body: SdpParseError or ``RtspError(400)``, else tracks, a live path with their
    depacketizers, and a DESCRIBE answer for its readers that is valid SDP."""
    try:
        description = parse_sdp(data)
        tracks = announced_tracks(description.media)
    except SdpParseError:
        return
    except RtspError as exc:
        assert exc.status == 400, exc
        return
    live = LivePath.from_announce("live/fuzz", description, tracks, "fuzz")
    offered = parse_sdp(live_presentation(live).sdp("127.0.0.1"))
    assert len(offered.media) == len(tracks)


def fuzz_tunnel_base64(data: bytes) -> None:
    """The tunnel's POST body split anywhere: the same bytes as decoded whole, or Base64Error."""
    whole: bytes | None
    try:
        whole = Base64Stream().feed(data[1:])
    except Base64Error:
        whole = None
    stream = Base64Stream()
    out = bytearray()
    try:
        for piece in chunks(data):
            out += stream.feed(piece)
            assert 0 <= stream.pending <= 3
    except Base64Error:
        return
    if whole is not None:
        assert bytes(out) == whole


_CONFIG_DIR = Path(tempfile.mkdtemp(prefix="streamd-fuzz-config-"))


def fuzz_config(data: bytes) -> None:
    """A config file: a ServerConfig or ConfigError (the CLI prints it and exits)."""
    path = _CONFIG_DIR / "streamd.toml"
    path.write_bytes(data)
    try:
        config = load_config(path, {})
    except ConfigError:
        return
    for name in config.paths:
        config.path_settings(name)
