"""AAC bitstream helpers: ADTS framing and the AudioSpecificConfig (ISO 14496-3).

Raw .aac files and MPEG-TS carry AAC in ADTS frames (a 7- or 9-byte header per frame); MP4 and
Matroska carry bare frames plus an AudioSpecificConfig. RTP (RFC 3640) wants bare frames and the
AudioSpecificConfig in the SDP, so ADTS headers are stripped and a config is built from them.
"""

from __future__ import annotations

from dataclasses import dataclass

from media.errors import MediaError
from media.track import AacConfig

SAMPLE_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
# channelConfiguration -> number of channels (0: given by a program_config_element).
CHANNELS = {0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 8, 11: 7, 12: 8, 13: 24, 14: 8}
AOT_SBR = 5
AOT_PS = 29
AOT_ESCAPE = 31
# Object types whose AudioSpecificConfig continues with a GASpecificConfig.
_GA_TYPES = frozenset({1, 2, 3, 4, 6, 7, 17, 19, 20, 21, 22, 23})
_ER_TYPES = frozenset({17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 39})
_SYNC_SBR = 0x2B7
_SYNC_PS = 0x548


@dataclass(frozen=True, slots=True)
class AdtsHeader:
    """The fields of one ADTS header that matter for streaming."""

    object_type: int  # MPEG-4 audio object type (ADTS profile + 1): 1..4
    sampling_index: int
    sample_rate: int
    channel_config: int
    frame_length: int  # bytes, header included
    header_length: int  # 7, or 9 when a CRC follows
    raw_blocks: int  # raw_data_blocks in the frame (1..4), each 1024 samples
    mpeg2: bool = False  # the ID bit: MPEG-2 AAC rather than MPEG-4


def parse_adts_header(data: bytes, offset: int = 0) -> AdtsHeader:
    """Parse the ADTS header at ``offset``. Raises MediaError if there is none there."""
    h = data[offset : offset + 7]
    if len(h) < 7:
        raise MediaError(f"ADTS header truncated ({len(h)} of 7 bytes)")
    if h[0] != 0xFF or (h[1] & 0xF6) != 0xF0:
        raise MediaError(f"no ADTS sync word at offset {offset} (found {h[:2].hex()})")
    protection_absent = h[1] & 0x01
    sampling_index = (h[2] >> 2) & 0x0F
    if sampling_index >= len(SAMPLE_RATES):
        raise MediaError(f"ADTS header with reserved sampling frequency index {sampling_index}")
    header_length = 7 if protection_absent else 9
    frame_length = ((h[3] & 0x03) << 11) | (h[4] << 3) | (h[5] >> 5)
    if frame_length < header_length:
        raise MediaError(f"ADTS frame length {frame_length} shorter than its header")
    return AdtsHeader(
        object_type=(h[2] >> 6) + 1,
        sampling_index=sampling_index,
        sample_rate=SAMPLE_RATES[sampling_index],
        channel_config=((h[2] & 0x01) << 2) | (h[3] >> 6),
        frame_length=frame_length,
        header_length=header_length,
        raw_blocks=(h[6] & 0x03) + 1,
        mpeg2=bool(h[1] & 0x08),
    )


def looks_like_adts(data: bytes) -> bool:
    """True if ``data`` starts with an ADTS sync word (12 ones, layer 0)."""
    return len(data) >= 2 and data[0] == 0xFF and (data[1] & 0xF6) == 0xF0


def split_adts(data: bytes) -> list[tuple[AdtsHeader, bytes]]:
    """Split back-to-back ADTS frames into (header, raw frame without header or CRC).

    Raises MediaError on a missing sync word or a frame running past the end. A frame with
    several raw_data_blocks stays one payload (``raw_blocks`` says how many it holds).
    """
    frames: list[tuple[AdtsHeader, bytes]] = []
    pos = 0
    while pos < len(data):
        header = parse_adts_header(data, pos)
        end = pos + header.frame_length
        if end > len(data):
            raise MediaError(f"ADTS frame of {header.frame_length} bytes truncated to {len(data) - pos}")
        # With several blocks and a CRC, a CRC word follows each block position table; drop it too.
        skip = header.header_length + (2 * (header.raw_blocks - 1) if header.header_length == 9 else 0)
        frames.append((header, data[pos + min(skip, header.frame_length) : end]))
        pos = end
    return frames


def build_adts_header(
    object_type: int, sampling_index: int, channel_config: int, payload_length: int
) -> bytes:
    """A 7-byte ADTS header (no CRC, one raw_data_block) for a raw frame of ``payload_length`` bytes."""
    if not 1 <= object_type <= 4:
        raise MediaError(f"ADTS cannot carry audio object type {object_type}")
    if not 0 <= sampling_index < len(SAMPLE_RATES) or not 0 <= channel_config <= 7:
        raise MediaError("ADTS sampling index or channel configuration out of range")
    frame_length = payload_length + 7
    if frame_length >= 1 << 13:
        raise MediaError(f"AAC frame of {payload_length} bytes too long for ADTS")
    bits = _BitWriter()
    bits.write(0xFFF, 12)
    bits.write(0, 1)  # ID: MPEG-4
    bits.write(0, 2)  # layer
    bits.write(1, 1)  # protection_absent
    bits.write(object_type - 1, 2)
    bits.write(sampling_index, 4)
    bits.write(0, 1)  # private_bit
    bits.write(channel_config, 3)
    bits.write(0, 4)  # original_copy, home, copyright bits
    bits.write(frame_length, 13)
    bits.write(0x7FF, 11)  # buffer fullness: variable rate
    bits.write(0, 2)  # one raw_data_block
    return bits.getvalue()


def audio_specific_config_from_adts(header: AdtsHeader) -> bytes:
    """The 2-byte AudioSpecificConfig equivalent to an ADTS header (for SDP ``config=``)."""
    return build_audio_specific_config(header.object_type, header.sample_rate, header.channel_config)


def build_audio_specific_config(object_type: int, sample_rate: int, channel_config: int) -> bytes:
    """A minimal AudioSpecificConfig: object type, rate (indexed or explicit), channels, GA defaults."""
    if not 1 <= object_type <= 95 or object_type == AOT_ESCAPE:
        raise MediaError(f"invalid audio object type {object_type}")
    if not 0 <= channel_config <= 15:
        raise MediaError(f"invalid channel configuration {channel_config}")
    bits = _BitWriter()
    if object_type > AOT_ESCAPE:
        bits.write(AOT_ESCAPE, 5)
        bits.write(object_type - 32, 6)
    else:
        bits.write(object_type, 5)
    if sample_rate in SAMPLE_RATES:
        bits.write(SAMPLE_RATES.index(sample_rate), 4)
    else:
        if not 0 < sample_rate < (1 << 24):
            raise MediaError(f"sample rate {sample_rate} cannot be signalled")
        bits.write(15, 4)
        bits.write(sample_rate, 24)
    bits.write(channel_config, 4)
    bits.write(0, 3)  # GASpecificConfig: frameLengthFlag, dependsOnCoreCoder, extensionFlag
    return bits.getvalue()


def parse_audio_specific_config(asc: bytes) -> AacConfig:
    """Parse an AudioSpecificConfig.

    Handles the escaped object type (31), explicit 24-bit rates, and explicit SBR/PS signalling
    both hierarchical (object type 5 or 29 first) and backward compatible (sync extension after
    the GASpecificConfig). ``object_type`` is the core type (2 for HE-AAC over AAC-LC);
    ``extension_sample_rate`` is the SBR output rate when signalled. Implicit SBR cannot be seen
    here, so it stays None. Raises MediaError on a truncated or invalid config.
    """
    asc = bytes(asc)
    bits = BitReader(asc)
    object_type = _object_type(bits)
    sample_rate = _sampling_frequency(bits)
    channel_config = bits.read(4)
    extension_rate: int | None = None
    if object_type in (AOT_SBR, AOT_PS):
        extension_rate = _sampling_frequency(bits)
        object_type = _object_type(bits)
        if object_type == 22:
            bits.read(4)  # extensionChannelConfiguration
    if channel_config not in CHANNELS:
        raise MediaError(f"reserved AAC channel configuration {channel_config}")
    if extension_rate is None and object_type in _GA_TYPES and channel_config != 0:
        try:
            extension_rate = _backward_compatible_sbr(bits, object_type)
        except MediaError:
            extension_rate = None  # the optional tail is cut short: no SBR signalled
    return AacConfig(
        audio_specific_config=asc,
        object_type=object_type,
        sample_rate=sample_rate,
        channels=CHANNELS[channel_config],
        extension_sample_rate=extension_rate,
    )


def embedded_audio_specific_config(data: bytes, bit_offset: int) -> tuple[bytes, int]:
    """An AudioSpecificConfig that starts ``bit_offset`` bits into ``data`` (as inside a LATM
    StreamMuxConfig, RFC 6416): returns it byte-aligned (zero-padded) and how many bits it took.

    Only what a length-less container can delimit is accepted: a general-audio core with a
    channel configuration (not a program config element), hierarchical SBR/PS signalling, and
    no backward-compatible extension after it. Anything else is a MediaError.
    """
    bits = BitReader(bytes(data))
    bits.skip(bit_offset)
    start = bits.position
    object_type = _object_type(bits)
    _sampling_frequency(bits)
    channel_config = bits.read(4)
    if object_type in (AOT_SBR, AOT_PS):
        _sampling_frequency(bits)
        object_type = _object_type(bits)
    if object_type not in _GA_TYPES or channel_config == 0 or object_type == 22:
        raise MediaError(f"embedded AudioSpecificConfig of object type {object_type} not supported")
    _skip_ga_specific_config(bits, object_type)
    _skip_sync_extension(bits)
    length = bits.position - start
    value = (int.from_bytes(bytes(data), "big") >> (len(data) * 8 - bits.position)) & ((1 << length) - 1)
    writer = _BitWriter()
    writer.write(value, length)
    return writer.getvalue(), length


def _skip_ga_specific_config(bits: BitReader, object_type: int) -> None:
    """Step over a GASpecificConfig (ISO 14496-3 4.4.1) and an ER type's epConfig."""
    bits.read(1)  # frameLengthFlag
    if bits.read(1):  # dependsOnCoreCoder
        bits.read(14)
    extension_flag = bits.read(1)
    if object_type in (6, 20):
        bits.read(3)  # layerNr
    if extension_flag:
        if object_type == 22:
            bits.read(16)  # numOfSubFrame, layer_length
        if object_type in (17, 19, 20, 23):
            bits.read(3)  # resilience flags
        bits.read(1)  # extensionFlag3
    if object_type in _ER_TYPES:
        bits.read(2)  # epConfig


def _skip_sync_extension(bits: BitReader) -> None:
    """Step over a backward-compatible SBR (and PS) signal, which encoders such as ffmpeg's
    append to the config (ISO 14496-3 1.6.5.2): the bits after it belong to the container."""
    if bits.remaining() < 16 or bits.peek(11) != _SYNC_SBR:
        return
    bits.read(11)
    if _object_type(bits) != AOT_SBR:
        return
    if bits.read(1):  # sbrPresentFlag
        _sampling_frequency(bits)
        if bits.remaining() >= 12 and bits.peek(11) == _SYNC_PS:
            bits.read(11)
            bits.read(1)  # psPresentFlag


def _backward_compatible_sbr(bits: BitReader, object_type: int) -> int | None:
    """Skip the GASpecificConfig and look for the SBR sync extension (ISO 14496-3 1.6.5.2)."""
    _skip_ga_specific_config(bits, object_type)
    if bits.remaining() < 16 or bits.read(11) != _SYNC_SBR:
        return None
    if _object_type(bits) != AOT_SBR or not bits.read(1):  # sbrPresentFlag
        return None
    return _sampling_frequency(bits)


def _object_type(bits: BitReader) -> int:
    value = bits.read(5)
    return 32 + bits.read(6) if value == AOT_ESCAPE else value


def _sampling_frequency(bits: BitReader) -> int:
    index = bits.read(4)
    if index == 15:
        rate = bits.read(24)
        if rate == 0:
            raise MediaError("AudioSpecificConfig with an explicit sampling frequency of 0")
        return rate
    if index >= len(SAMPLE_RATES):
        raise MediaError(f"AudioSpecificConfig with reserved sampling frequency index {index}")
    return SAMPLE_RATES[index]


class BitReader:
    """MSB-first bit reader over bytes; running out is a MediaError (a truncated config)."""

    def __init__(self, data: bytes) -> None:
        self._value = int.from_bytes(data, "big")
        self._total = len(data) * 8
        self._pos = 0

    def remaining(self) -> int:
        return self._total - self._pos

    @property
    def position(self) -> int:
        return self._pos

    def peek(self, n: int) -> int:
        value = self.read(n)
        self._pos -= n
        return value

    def skip(self, n: int) -> None:
        if self._pos + n > self._total:
            raise MediaError("bitstream truncated")
        self._pos += n

    def read(self, n: int) -> int:
        if self._pos + n > self._total:
            raise MediaError("bitstream truncated")
        self._pos += n
        return (self._value >> (self._total - self._pos)) & ((1 << n) - 1)


class _BitWriter:
    def __init__(self) -> None:
        self._value = 0
        self._bits = 0

    def write(self, value: int, n: int) -> None:
        self._value = (self._value << n) | (value & ((1 << n) - 1))
        self._bits += n

    def getvalue(self) -> bytes:
        pad = -self._bits % 8
        return (self._value << pad).to_bytes((self._bits + pad) // 8, "big")
