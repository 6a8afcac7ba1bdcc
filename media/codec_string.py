"""The RFC 6381 ``codecs`` parameter of a video track, so a browser can say whether it plays it.

``MediaSource.isTypeSupported('video/mp4; codecs="hvc1.1.6.L93.B0"')`` and ``canPlayType`` need
the exact string: a browser may decode HEVC Main and not Main 10, or AV1 8-bit and not 12-bit.
The strings come from the codec configuration the file carries (ISO/IEC 14496-15 for AVC and
HEVC, the AV1 ISOBMFF binding's ``av1C``); a generic string stands in when it is missing.
"""

from __future__ import annotations

from media.track import H264Config, H265Config, Track

GENERIC = {"h264": "avc1.42E01E", "hevc": "hvc1.1.6.L93.B0", "av1": "av01.0.08M.08", "vp9": "vp09.00.10.08"}


def video_codec_string(track: Track) -> str | None:
    """The ``codecs`` value for ``track`` in MP4, or None for codecs we do not describe."""
    try:
        if track.codec == "h264" and isinstance(track.config, H264Config) and track.config.sps:
            sps = track.config.sps[0]
            if len(sps) >= 4:
                return f"avc1.{sps[1:4].hex().upper()}"
        if track.codec == "hevc" and isinstance(track.config, H265Config) and track.config.sps:
            return hevc_codec_string(track.config.sps[0])
        if track.codec == "av1" and len(track.extradata) >= 4 and track.extradata[0] == 0x81:
            return av1_codec_string(track.extradata)
    except ValueError:
        pass
    return GENERIC.get(track.codec)


def hevc_codec_string(sps: bytes) -> str:
    """``hvc1.<profile>.<compatibility>.<tier><level>.<constraints>`` (ISO/IEC 14496-15 E.3)."""
    rbsp = _unescape(sps[2:24])  # after the NAL header: ids, then profile_tier_level
    if len(rbsp) < 13:
        raise ValueError("SPS too short for profile_tier_level")
    space, tier, profile = rbsp[1] >> 6, (rbsp[1] >> 5) & 1, rbsp[1] & 0x1F
    flags = int.from_bytes(rbsp[2:6], "big")
    compatibility = int(f"{flags:032b}"[::-1], 2)  # written in reverse bit order
    constraints = list(rbsp[6:12])
    while constraints and constraints[-1] == 0:
        constraints.pop()
    parts = [
        "hvc1",
        ("", "A", "B", "C")[space] + str(profile),
        f"{compatibility:X}",
        ("L", "H")[tier] + str(rbsp[12]),
        *(f"{b:X}" for b in constraints),
    ]
    return ".".join(parts)


def av1_codec_string(av1c: bytes) -> str:
    """``av01.<profile>.<level><tier>.<bit depth>`` from an AV1CodecConfigurationRecord."""
    profile, level = av1c[1] >> 5, av1c[1] & 0x1F
    tier = av1c[2] >> 7
    depth = 12 if av1c[2] & 0x60 == 0x60 else 10 if av1c[2] & 0x40 else 8
    return f"av01.{profile}.{level:02d}{'H' if tier else 'M'}.{depth:02d}"


def _unescape(data: bytes) -> bytes:
    """RBSP from NAL payload bytes: drop each emulation-prevention 0x03 after 0x00 0x00."""
    out = bytearray()
    zeros = 0
    for byte in data:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)
