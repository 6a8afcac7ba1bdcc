"""Bitstream helpers that read bytes a publisher controls (through its SDP or its RTP):
LATM StreamMuxConfig and AudioMuxElements, AudioSpecificConfig, H.264/H.265 parameter sets and
NAL units; plus ADTS, which arrives in files and MPEG-TS. ``MediaError`` is their one error."""

from __future__ import annotations

from media import aac, h264, h265, latm
from media.errors import MediaError


def _media(call, *args):  # type: ignore[no-untyped-def]
    try:
        return call(*args)
    except MediaError:
        return None


def fuzz_latm_config(data: bytes) -> None:
    """``config=`` of an MP4A-LATM fmtp: a StreamMuxConfig whose AudioSpecificConfig is
    what announced.py then parses, or MediaError."""
    config = _media(latm.parse_stream_mux_config, data)
    if config is not None:
        assert 1 <= config.subframes <= 64
        _media(aac.parse_audio_specific_config, config.audio_specific_config)


def fuzz_latm_element(data: bytes) -> None:
    """One AudioMuxElement (first byte: numSubFrames): units within it, or MediaError."""
    if data:
        subframes = data[0] % 64 + 1
        units = _media(latm.split_audio_mux_element, data[1:], subframes)
        assert units is None or (len(units) == subframes and sum(map(len, units)) < len(data))


def fuzz_aac_config(data: bytes) -> None:
    """AudioSpecificConfig (``config=`` of mpeg4-generic): an AacConfig or MediaError."""
    config = _media(aac.parse_audio_specific_config, data)
    if config is not None:
        assert config.sample_rate > 0 and config.channels >= 0


def fuzz_adts(data: bytes) -> None:
    """Back-to-back ADTS frames: (header, frame) pairs covering the input, or MediaError."""
    frames = _media(aac.split_adts, data)
    if frames is not None:
        assert sum(h.frame_length for h, _ in frames) == len(data)
        for header, _ in frames:
            aac.audio_specific_config_from_adts(header)


def fuzz_h264_nals(data: bytes) -> None:
    """NAL units of an Annex B stream or of sprop-parameter-sets: split (never raises), the
    parameter sets collected, then the avcC and profile-level-id a recording / DESCRIBE makes."""
    nals = h264.split_annexb(data)
    assert all(nals)
    config = h264.config_from_nals(nals)
    _media(h264.build_avcc, config)
    for sps in config.sps:
        _media(h264.profile_level_id, sps)
    avcc = _media(h264.parse_avcc, data)
    if avcc is not None:
        _media(h264.build_avcc, avcc)
    _media(h264.split_length_prefixed, data, 4)


def fuzz_h265_nals(data: bytes) -> None:
    """H.265 NAL units: keyframe / RASL checks never raise; parameter sets; hvcC or MediaError."""
    nals = h265.split_annexb(data)
    h265.may_lead_rasl(nals)
    h265.is_rasl(nals)
    for nal in nals:
        h265.is_irap(nal)
    h265.complete(h265.config_from_nals(nals))
    _media(h265.parse_hvcc, data)
