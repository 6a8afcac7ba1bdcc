"""Motion JPEG over RTP (RFC 2435), static payload type 26 (``JPEG/90000``).

RFC 2435 sends only the entropy-coded scan of a baseline JPEG and a few header fields (type,
Q, size in 8-pixel blocks); the receiver rebuilds the JPEG headers from them with the standard
Huffman tables. So only baseline, 8-bit, three-component YCbCr JPEGs with 4:2:2 (type 0) or
4:2:0 (type 1) sampling and the standard Huffman tables can be sent; anything else is refused.

We send Q = 255 with the file's own quantization tables in band on the first packet of every
frame, so the frame rebuilt from our packets decodes to exactly the source's pixels. Restart
intervals use types 64/65 with a restart marker header (F = L = 1, count 0x3FFF: fragments are
not aligned to restart intervals).
"""

from __future__ import annotations

from dataclasses import dataclass

from media.access_unit import AccessUnit
from media.track import Track

from .base import (
    DEFAULT_MAX_PAYLOAD_SIZE,
    DepacketizedUnit,
    Depacketizer,
    PayloadFormat,
    SequenceStatus,
    UnsupportedCodec,
)

STATIC_PAYLOAD_TYPE = 26
MAIN_HEADER_SIZE = 8
RESTART_HEADER_SIZE = 4
QUANT_HEADER_SIZE = 4
IN_BAND_Q = 255
SUPPORTED_PIXEL_FORMATS = frozenset({"yuvj420p", "yuvj422p", "yuv420p", "yuv422p"})
_MAX_FRAME_SIZE = 16 * 1024 * 1024

# JPEG (ITU T.81) Annex K.3 standard Huffman tables: (class << 4 | id, BITS, HUFFVAL).
_STANDARD_HUFFMAN = {
    0x00: (bytes.fromhex("00010501010101010100000000000000"), bytes(range(12))),
    0x01: (bytes.fromhex("00030101010101010101010000000000"), bytes(range(12))),
    0x10: (
        bytes.fromhex("0002010303020403050504040000017d"),
        bytes.fromhex(
            "01020300041105122131410613516107227114328191a1082342b1c11552d1f02433627282090a161718191a25262728"
            "292a3435363738393a434445464748494a535455565758595a636465666768696a737475767778797a83848586878889"
            "8a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2"
            "e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9fa"
        ),
    ),
    0x11: (
        bytes.fromhex("00020102040403040705040400010277"),
        bytes.fromhex(
            "000102031104052131061241510761711322328108144291a1b1c109233352f0156272d10a162434e125f11718191a26"
            "2728292a35363738393a434445464748494a535455565758595a636465666768696a737475767778797a828384858687"
            "88898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9da"
            "e2e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8f9fa"
        ),
    ),
}

# ITU T.81 Annex K.1 quantization tables in natural (row-major) order, the base of RFC 2435's Q scaling.
_LUMA_BASE = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
_CHROMA_BASE = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
    *([99] * 32),
)  # fmt: skip


def _zigzag() -> list[int]:
    """Natural-order index of each zig-zag position: anti-diagonals, alternating direction."""
    order = []
    for s in range(15):
        cells = [(r, s - r) for r in range(8) if 0 <= s - r < 8]
        order.extend(r * 8 + c for r, c in (cells if s % 2 else reversed(cells)))
    return order


ZIGZAG = _zigzag()


def tables_for_q(q: int) -> tuple[bytes, bytes]:
    """Luma and chroma tables (zig-zag order) for Q 1..99, scaled as RFC 2435 Appendix A does."""
    factor = min(max(q, 1), 99)
    scale = 5000 // factor if factor < 50 else 200 - factor * 2
    luma = bytes(min(max((_LUMA_BASE[z] * scale + 50) // 100, 1), 255) for z in ZIGZAG)
    chroma = bytes(min(max((_CHROMA_BASE[z] * scale + 50) // 100, 1), 255) for z in ZIGZAG)
    return luma, chroma


@dataclass(frozen=True, slots=True)
class JpegFrame:
    """What RFC 2435 keeps of a JPEG: the rest is implied by the type and the standard tables."""

    jpeg_type: int  # 0: 4:2:2, 1: 4:2:0
    width: int  # pixels (multiple of 8)
    height: int
    luma_table: bytes  # 64 bytes, zig-zag order
    chroma_table: bytes
    restart_interval: int
    scan: bytes  # entropy-coded data, without the EOI


def parse_jpeg(data: bytes) -> JpegFrame:
    """Split a JPEG into RFC 2435's pieces; UnsupportedCodec says why one cannot be sent."""
    if not data.startswith(b"\xff\xd8"):
        raise UnsupportedCodec("MJPEG frame does not start with a JPEG SOI marker")
    tables: dict[int, bytes] = {}
    sof: bytes | None = None
    restart = 0
    pos = 2
    while True:
        while pos < len(data) and data[pos] == 0xFF and pos + 1 < len(data) and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos + 4 > len(data) or data[pos] != 0xFF:
            raise UnsupportedCodec("MJPEG frame is truncated or malformed before its scan")
        marker = data[pos + 1]
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        segment = data[pos + 4 : pos + 2 + length]
        if length < 2 or len(segment) != length - 2:
            raise UnsupportedCodec("MJPEG frame has a truncated header segment")
        pos += 2 + length
        if marker == 0xDB:
            _read_dqt(segment, tables)
        elif marker == 0xC4:
            _check_dht(segment)
        elif marker == 0xDD:
            if len(segment) < 2:
                raise UnsupportedCodec("MJPEG frame has a malformed DRI segment")
            restart = int.from_bytes(segment[:2], "big")
        elif marker == 0xC0:
            sof = segment
        elif 0xC1 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            raise UnsupportedCodec(
                f"MJPEG frame is not baseline JPEG (SOF{marker - 0xC0}); RFC 2435 needs SOF0"
            )
        elif marker == 0xDA:
            return _frame(sof, tables, restart, segment, data[pos:])


def _read_dqt(segment: bytes, tables: dict[int, bytes]) -> None:
    pos = 0
    while pos < len(segment):
        precision, table_id = segment[pos] >> 4, segment[pos] & 0x0F
        if precision != 0:
            raise UnsupportedCodec("MJPEG frame uses 16-bit quantization tables (not baseline)")
        if pos + 65 > len(segment):
            raise UnsupportedCodec("MJPEG frame has a truncated DQT segment")
        tables[table_id] = segment[pos + 1 : pos + 65]
        pos += 65


def _check_dht(segment: bytes) -> None:
    pos = 0
    while pos < len(segment):
        if pos + 17 > len(segment):
            raise UnsupportedCodec("MJPEG frame has a truncated DHT segment")
        key, bits = segment[pos], segment[pos + 1 : pos + 17]
        values = segment[pos + 17 : pos + 17 + sum(bits)]
        if _STANDARD_HUFFMAN.get(key) != (bits, values):
            raise UnsupportedCodec(
                "MJPEG frame uses its own Huffman tables; RFC 2435 receivers assume the standard ones"
            )
        pos += 17 + sum(bits)


def _frame(sof: bytes | None, tables: dict[int, bytes], restart: int, sos: bytes, rest: bytes) -> JpegFrame:
    if sof is None or len(sof) != 15 or sof[0] != 8 or sof[5] != 3:
        raise UnsupportedCodec("MJPEG frame is not 8-bit three-component baseline JPEG")
    height, width = int.from_bytes(sof[1:3], "big"), int.from_bytes(sof[3:5], "big")
    (_, y_sampling, y_table), (_, cb_sampling, cb_table), (_, cr_sampling, cr_table) = (
        sof[6 + 3 * i : 9 + 3 * i] for i in range(3)
    )
    jpeg_type = {0x21: 0, 0x22: 1}.get(y_sampling)
    if jpeg_type is None or cb_sampling != 0x11 or cr_sampling != 0x11:
        factors = f"{y_sampling:02x}/{cb_sampling:02x}/{cr_sampling:02x}"
        raise UnsupportedCodec(
            f"MJPEG sampling factors (Y/Cb/Cr) {factors}: RFC 2435 carries only 21/11/11 and 22/11/11"
        )
    if cb_table != cr_table or y_table not in tables or cb_table not in tables:
        raise UnsupportedCodec("MJPEG frame's quantization tables do not fit RFC 2435 (one for Cb and Cr)")
    if width % 8 or height % 8 or not 0 < width <= 2040 or not 0 < height <= 2040:
        raise UnsupportedCodec(f"MJPEG size {width}x{height}: RFC 2435 needs multiples of 8 up to 2040")
    if sos != bytes([3, sof[6], 0x00, sof[9], 0x11, sof[12], 0x11, 0, 63, 0]):
        raise UnsupportedCodec("MJPEG scan is not one interleaved baseline scan with tables 0/1")
    end = rest.rfind(b"\xff\xd9")
    scan = rest[:end] if end >= 0 else rest
    return JpegFrame(jpeg_type, width, height, tables[y_table], tables[cb_table], restart, scan)


def build_jpeg(frame: JpegFrame) -> bytes:
    """A complete JPEG for an RFC 2435 frame (the receiver's job, per RFC 2435 Appendix B)."""

    def segment(marker: int, body: bytes) -> bytes:
        return bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + body

    y_sampling = 0x21 if frame.jpeg_type == 0 else 0x22
    size = frame.height.to_bytes(2, "big") + frame.width.to_bytes(2, "big")
    parts = [
        b"\xff\xd8",
        segment(0xDB, b"\x00" + frame.luma_table + b"\x01" + frame.chroma_table),
    ]
    if frame.restart_interval:
        parts.append(segment(0xDD, frame.restart_interval.to_bytes(2, "big")))
    parts.append(segment(0xC0, b"\x08" + size + bytes([3, 1, y_sampling, 0, 2, 0x11, 1, 3, 0x11, 1])))
    parts.append(segment(0xC4, b"".join(bytes([k]) + b + v for k, (b, v) in _STANDARD_HUFFMAN.items())))
    parts.append(segment(0xDA, bytes([3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0])))
    parts.append(frame.scan)
    parts.append(b"\xff\xd9")
    return b"".join(parts)


def pixel_format_problem(track: Track) -> str | None:
    """Why the track's probed facts rule out RFC 2435, or None if they may fit."""
    if track.pixel_format and track.pixel_format not in SUPPORTED_PIXEL_FORMATS:
        return f"MJPEG pixel format {track.pixel_format} is not 4:2:0 or 4:2:2 (RFC 2435 types 0/1)"
    for side in (track.width, track.height):
        if side is not None and (side % 8 or side > 2040):
            return f"MJPEG size {track.width}x{track.height}: RFC 2435 needs multiples of 8 up to 2040"
    return None


class MjpegFormat(PayloadFormat):
    """Packetizer and SDP attributes for one MJPEG track."""

    encoding_name = "JPEG"
    clock_rate = 90000
    media = "video"
    min_payload_size = MAIN_HEADER_SIZE + RESTART_HEADER_SIZE + QUANT_HEADER_SIZE + 128 + 1

    def __init__(
        self,
        track: Track,
        payload_type: int = STATIC_PAYLOAD_TYPE,
        max_payload_size: int = DEFAULT_MAX_PAYLOAD_SIZE,
    ) -> None:
        super().__init__(STATIC_PAYLOAD_TYPE, max_payload_size)  # static: the caller's number is ignored
        problem = pixel_format_problem(track)
        if problem:
            raise UnsupportedCodec(problem)
        self.track = track

    def fmtp(self) -> None:
        return None

    def packetize(self, au: AccessUnit) -> list[tuple[bytes, bool]]:
        """Payloads of one JPEG; UnsupportedCodec if it is not one RFC 2435 can carry."""
        frame = parse_jpeg(au.data)
        if len(frame.scan) >= 1 << 24:
            raise UnsupportedCodec("MJPEG frame too large for RFC 2435's 24-bit fragment offsets")
        jpeg_type = frame.jpeg_type + (64 if frame.restart_interval else 0)
        restart = b""
        if frame.restart_interval:
            restart = frame.restart_interval.to_bytes(2, "big") + b"\xff\xff"  # F = L = 1, count 0x3FFF
        quant = b"\x00\x00\x00\x80" + frame.luma_table + frame.chroma_table
        out: list[tuple[bytes, bool]] = []
        offset = 0
        while offset < len(frame.scan) or not out:
            extra = restart + (quant if offset == 0 else b"")
            step = self.max_payload_size - MAIN_HEADER_SIZE - len(extra)
            chunk = frame.scan[offset : offset + step]
            main = offset.to_bytes(4, "big") + bytes(
                [jpeg_type, IN_BAND_Q, frame.width // 8, frame.height // 8]
            )
            out.append((main + extra + chunk, False))
            offset += len(chunk)
        out[-1] = (out[-1][0], True)
        return out

    def depacketizer(self) -> MjpegDepacketizer:
        return MjpegDepacketizer()


class MjpegDepacketizer(Depacketizer):
    """Rebuilds complete JPEG files from RFC 2435 payloads of types 0/1 and 64/65.

    A frame must arrive whole, in order (fragment offsets are checked); any loss drops it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._timestamp: int | None = None
        self._scan: bytearray | None = None
        self._header: tuple[int, int, int, bytes, bytes, int] | None = None
        self._cached_tables: dict[int, tuple[bytes, bytes]] = {}

    def push(self, payload: bytes, marker: bool, timestamp: int, seq: int) -> list[DepacketizedUnit]:
        status = self._sequence_status(seq)
        if status is SequenceStatus.DUPLICATE:
            return []
        if status is SequenceStatus.GAP or timestamp != self._timestamp:
            self._scan = None
        self._timestamp = timestamp
        if len(payload) < MAIN_HEADER_SIZE:
            self._scan = None
            return []
        offset = int.from_bytes(payload[1:4], "big")
        if offset == 0:
            self._start(payload)
        elif self._scan is not None:
            self._continue(payload, offset)
        if not marker or self._scan is None or self._header is None:
            return []
        jpeg_type, width, height, luma, chroma, restart = self._header
        frame = JpegFrame(jpeg_type, width, height, luma, chroma, restart, bytes(self._scan))
        self._scan = None
        return [DepacketizedUnit(timestamp, build_jpeg(frame))]

    def _start(self, payload: bytes) -> None:
        self._scan = None
        jpeg_type, q, width, height = payload[4], payload[5], payload[6] * 8, payload[7] * 8
        if jpeg_type & 0x3F > 1 or jpeg_type > 127 or not width or not height:
            return
        pos = MAIN_HEADER_SIZE
        restart = 0
        if jpeg_type >= 64:
            if pos + RESTART_HEADER_SIZE > len(payload):
                return
            restart = int.from_bytes(payload[pos : pos + 2], "big")
            pos += RESTART_HEADER_SIZE
        if q >= 128:
            if pos + QUANT_HEADER_SIZE > len(payload):
                return
            precision, length = payload[pos + 1], int.from_bytes(payload[pos + 2 : pos + 4], "big")
            pos += QUANT_HEADER_SIZE
            body = payload[pos : pos + length]
            pos += length
            if precision or len(body) != length or length not in (0, 64, 128):
                return
            if length:
                tables = (body[:64], body[64:] or body[:64])
                if q < 255:
                    self._cached_tables[q] = tables
            elif q in self._cached_tables:
                tables = self._cached_tables[q]
            else:
                return
        elif q:
            tables = tables_for_q(q)
        else:
            return  # Q = 0 is reserved
        self._header = (jpeg_type & 0x3F, width, height, tables[0], tables[1], restart)
        self._scan = bytearray(payload[pos:])

    def _continue(self, payload: bytes, offset: int) -> None:
        if self._scan is None or self._header is None:
            return
        if offset != len(self._scan) or (payload[4] & 0x3F) != self._header[0]:
            self._scan = None
            return
        pos = MAIN_HEADER_SIZE + (RESTART_HEADER_SIZE if payload[4] >= 64 else 0)
        self._scan += payload[pos:]
        if len(self._scan) > _MAX_FRAME_SIZE:
            self._scan = None
