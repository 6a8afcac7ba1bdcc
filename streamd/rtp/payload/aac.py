"""AAC over RTP: RFC 3640 ``mpeg4-generic``, mode AAC-hbr (13-bit sizes, 3-bit indices).

We send one access unit per packet, the way most servers do: an AAC frame is a few hundred
bytes, and waiting to aggregate several would add tens of milliseconds of latency for a few
bytes of header saved. An AU too big for one packet is fragmented (RFC 3640 3.2.3). The
receiver also accepts several AUs per packet, as other senders produce them.
"""

from __future__ import annotations

from media.access_unit import AccessUnit
from media.track import AacConfig, Track

from .base import (
    DEFAULT_MAX_PAYLOAD_SIZE,
    MAX_UNITS_PER_PACKET,
    DepacketizedUnit,
    Depacketizer,
    PayloadFormat,
    SequenceStatus,
    UnsupportedCodec,
)

SIZE_LENGTH = 13
INDEX_LENGTH = 3
INDEX_DELTA_LENGTH = 3
SAMPLES_PER_FRAME = 1024  # AAC core frame; the rare 960-sample variant is not distinguished

_HEADER_BYTES = 4  # AU-headers-length (16 bits) + one 16-bit AU-header
_MAX_AU = (1 << SIZE_LENGTH) - 1
_MAX_RECEIVED_AU = 1 << 20  # a receiver's bound, whatever sizelength a peer announces

# AU-header field widths (sizelength, indexlength, indexdeltalength) each RFC 3640 mode fixes
# (3.3.5-3.3.6); "generic" leaves them to the sender, within bounds that keep sizes meaningful
MODE_WIDTHS = {"aac-hbr": (13, 3, 3), "aac-lbr": (6, 2, 2), "celp-vbr": (6, 2, 2)}
GENERIC_SIZE_LENGTH = (6, 16)
GENERIC_INDEX_LENGTH = (0, 8)


def header_widths(fmtp: dict[str, str]) -> tuple[int, int, int]:
    """The AU-header field widths an announced ``mpeg4-generic`` fmtp gives (keys lower-case).

    ``ValueError`` with the reason when they are not numbers or not what the mode allows: a
    1-bit size field would let one packet carry tens of thousands of one-byte AUs.
    """
    mode = fmtp.get("mode", "generic").strip().lower()
    names = ("sizelength", "indexlength", "indexdeltalength")
    widths = []
    for name, default in zip(names, (SIZE_LENGTH, INDEX_LENGTH, INDEX_DELTA_LENGTH), strict=True):
        raw = fmtp.get(name, str(default)).strip()
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 3):
            raise ValueError(f"{name}={raw[:20]!r} is not a number")
        widths.append(int(raw))
    size, index, delta = widths
    fixed = MODE_WIDTHS.get(mode)
    if fixed is not None and (size, index, delta) != fixed:
        raise ValueError(
            f"mode={mode} needs sizelength={fixed[0]};indexlength={fixed[1]};indexdeltalength={fixed[2]}"
        )
    low, high = GENERIC_SIZE_LENGTH
    if not low <= size <= high:
        raise ValueError(f"sizelength={size} is outside {low}..{high}")
    low, high = GENERIC_INDEX_LENGTH
    if not (low <= index <= high and low <= delta <= high):
        raise ValueError(f"indexlength and indexdeltalength must be within {low}..{high}")
    return size, index, delta


class AacFormat(PayloadFormat):
    """Packetizer and SDP attributes for one AAC track.

    The RTP clock is the sampling rate the AudioSpecificConfig announces: the SBR extension
    rate when it is signalled explicitly (HE-AAC), the core rate otherwise. RTP timestamps must
    be counted in ``clock_rate`` units whatever the track's time base.
    """

    encoding_name = "mpeg4-generic"
    media = "audio"
    min_payload_size = _HEADER_BYTES + 1

    def __init__(
        self, track: Track, payload_type: int = 97, max_payload_size: int = DEFAULT_MAX_PAYLOAD_SIZE
    ) -> None:
        super().__init__(payload_type, max_payload_size)
        config = track.config
        if not isinstance(config, AacConfig) or not config.audio_specific_config:
            raise UnsupportedCodec("AAC track without AudioSpecificConfig")
        clock_rate = config.extension_sample_rate or config.sample_rate or track.sample_rate
        if not clock_rate:
            raise UnsupportedCodec("AAC track without a sampling rate")
        channels = config.channels or track.channels  # 0 in the ASC: layout is in a PCE
        self.track = track
        self.config = config
        self.clock_rate = clock_rate
        self.encoding_params = str(channels) if channels else None

    @property
    def samples_per_frame(self) -> int:
        """RTP clock ticks per access unit (doubled when the clock runs at the SBR rate)."""
        core_rate = self.config.sample_rate or self.clock_rate
        return SAMPLES_PER_FRAME * self.clock_rate // core_rate

    def fmtp(self) -> str:
        return (
            f"{self.payload_type} streamtype=5;profile-level-id=1;mode=AAC-hbr;"
            f"sizelength={SIZE_LENGTH};indexlength={INDEX_LENGTH};indexdeltalength={INDEX_DELTA_LENGTH};"
            f"config={self.config.audio_specific_config.hex()}"
        )

    def packetize(self, au: AccessUnit) -> list[tuple[bytes, bool]]:
        """One packet per AU, or fragments each repeating the AU-header with the full size.

        An AU larger than 8191 bytes cannot be described with 13-bit sizes; AAC frames never
        exceed 6144 bytes (768 per channel), so such an AU is corrupt and is dropped.
        """
        data = au.data
        if not data or len(data) > _MAX_AU:
            return []
        header = (SIZE_LENGTH + INDEX_LENGTH).to_bytes(2, "big") + (len(data) << INDEX_LENGTH).to_bytes(
            2, "big"
        )
        step = self.max_payload_size - _HEADER_BYTES
        chunks = [data[i : i + step] for i in range(0, len(data), step)]
        return [(header + chunk, i == len(chunks) - 1) for i, chunk in enumerate(chunks)]

    def depacketizer(self) -> AacDepacketizer:
        return AacDepacketizer(samples_per_frame=self.samples_per_frame)


class AacDepacketizer(Depacketizer):
    """Rebuilds AAC access units from RFC 3640 payloads (AU-headers, no auxiliary section).

    The header field widths come from the SDP fmtp (defaults: AAC-hbr). Interleaving is not
    supported: index fields are read and ignored, and the n-th AU of a packet is given the
    packet timestamp + n * ``samples_per_frame``.
    """

    def __init__(
        self,
        size_length: int = SIZE_LENGTH,
        index_length: int = INDEX_LENGTH,
        index_delta_length: int = INDEX_DELTA_LENGTH,
        samples_per_frame: int = SAMPLES_PER_FRAME,
    ) -> None:
        super().__init__()
        if not 1 <= size_length <= 32 or not 0 <= index_length <= 32 or not 0 <= index_delta_length <= 32:
            raise ValueError("AU-header field widths must be sizelength 1..32, index lengths 0..32")
        self._size_length = size_length
        self._index_length = index_length
        self._index_delta_length = index_delta_length
        self._samples_per_frame = samples_per_frame
        self._fragment: bytearray | None = None
        self._fragment_size = 0
        self._fragment_timestamp = 0

    def push(self, payload: bytes, marker: bool, timestamp: int, seq: int) -> list[DepacketizedUnit]:
        status = self._sequence_status(seq)
        if status is SequenceStatus.DUPLICATE:
            return []
        if status is SequenceStatus.GAP:
            self._fragment = None
        parsed = self._parse(payload)
        if parsed is None:
            self._fragment = None
            return []
        sizes, data = parsed
        if len(sizes) == 1 and len(data) < sizes[0] <= _MAX_RECEIVED_AU:
            return self._accept_fragment(sizes[0], data, timestamp)
        self._fragment = None
        if sum(sizes) > len(data):
            return []
        units = []
        pos = 0
        for n, size in enumerate(sizes):
            if size:
                stamp = (timestamp + n * self._samples_per_frame) & 0xFFFFFFFF
                units.append(DepacketizedUnit(stamp, data[pos : pos + size]))
            pos += size
        return units

    def _accept_fragment(self, size: int, data: bytes, timestamp: int) -> list[DepacketizedUnit]:
        """Collect one fragment; the AU completes when exactly ``size`` bytes have arrived.

        Fragments of one AU share its timestamp and size, so a mismatch means the earlier
        fragments belonged to an AU whose end was lost; a collection that started after a lost
        first fragment stays short of ``size`` and is discarded by the next AU.
        """
        if self._fragment is None or (size, timestamp) != (self._fragment_size, self._fragment_timestamp):
            self._fragment = bytearray()
            self._fragment_size, self._fragment_timestamp = size, timestamp
        self._fragment += data
        if len(self._fragment) < size:
            return []
        au, self._fragment = bytes(self._fragment), None
        return [DepacketizedUnit(timestamp, au)] if len(au) == size else []

    def _parse(self, payload: bytes) -> tuple[list[int], bytes] | None:
        """AU sizes and the data section, or None when the AU-header section is malformed or
        describes more than ``MAX_UNITS_PER_PACKET`` AUs."""
        if len(payload) < 2:
            return None
        header_bits = int.from_bytes(payload[:2], "big")
        header_bytes = (header_bits + 7) // 8
        if header_bits == 0 or 2 + header_bytes > len(payload):
            return None
        bits = int.from_bytes(payload[2 : 2 + header_bytes], "big") >> (header_bytes * 8 - header_bits)
        sizes = []
        remaining = header_bits
        index_length = self._index_length
        while remaining > 0:
            width = self._size_length + index_length
            if width > remaining or len(sizes) >= MAX_UNITS_PER_PACKET:
                return None
            remaining -= width
            sizes.append((bits >> (remaining + index_length)) & ((1 << self._size_length) - 1))
            index_length = self._index_delta_length
        return sizes, payload[2 + header_bytes :]
