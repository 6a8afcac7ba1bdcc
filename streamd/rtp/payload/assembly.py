"""What the depacketizers of frame-based video formats (H.264, H.265, AV1) share: collecting the
parts of one access unit across packets.

A unit ends at the marker bit or when the timestamp changes (the marker packet was lost). A
sequence gap kills the fragment being rebuilt, never the parts already whole, so decoders get
every complete NAL unit or OBU and can conceal around the rest. Sizes are bounded against
endless fragments.
"""

from __future__ import annotations

from abc import abstractmethod

from .base import MAX_UNITS_PER_PACKET, DepacketizedUnit, Depacketizer, SequenceStatus

MAX_UNIT_SIZE = 32 * 1024 * 1024  # a receiver's bound on one access unit


class UnitAssembler(Depacketizer):
    def __init__(self) -> None:
        super().__init__()
        self._timestamp: int | None = None
        self._parts: list[bytes] = []
        self._size = 0
        self._fragment: bytearray | None = None

    def push(self, payload: bytes, marker: bool, timestamp: int, seq: int) -> list[DepacketizedUnit]:
        status = self._sequence_status(seq)
        if status is SequenceStatus.DUPLICATE:
            return []
        if status is SequenceStatus.GAP:
            self._fragment = None
        done: list[DepacketizedUnit] = []
        if timestamp != self._timestamp:
            done.extend(self._finish())
            self._timestamp = timestamp
        self._accept(payload)
        if marker:
            done.extend(self._finish())
        return done

    @abstractmethod
    def _accept(self, payload: bytes) -> None:
        """Take one payload apart into whole parts (``_keep``) and fragments (``_fragment``)."""

    @abstractmethod
    def _unit(self, timestamp: int, parts: tuple[bytes, ...]) -> DepacketizedUnit:
        """The access unit made of ``parts``."""

    def _grow_fragment(self, body: bytes) -> bool:
        """Append to the fragment being rebuilt; False (and the fragment dropped) past the bound."""
        if self._fragment is None:
            return False
        self._fragment += body
        if len(self._fragment) > MAX_UNIT_SIZE:
            self._fragment = None
            return False
        return True

    def _keep(self, part: bytes) -> None:
        if self._size + len(part) <= MAX_UNIT_SIZE:
            self._parts.append(part)
            self._size += len(part)

    def _finish(self) -> list[DepacketizedUnit]:
        """Emit the unit in progress, if any; an unfinished fragment dies with it."""
        self._fragment = None
        if not self._parts or self._timestamp is None:
            return []
        parts, self._parts, self._size = tuple(self._parts), [], 0
        return [self._unit(self._timestamp, parts)]


def split_aggregate(payload: bytes, header_size: int) -> list[bytes]:
    """The units of an aggregation packet (H.264 STAP-A, H.265 AP): 16-bit size, then the unit.

    A malformed packet yields none rather than a damaged list, and so does one with more than
    ``MAX_UNITS_PER_PACKET`` units.
    """
    units = []
    pos = header_size
    while pos < len(payload):
        if pos + 2 > len(payload) or len(units) >= MAX_UNITS_PER_PACKET:
            return []
        size = int.from_bytes(payload[pos : pos + 2], "big")
        pos += 2
        if size == 0 or pos + size > len(payload):
            return []
        units.append(payload[pos : pos + size])
        pos += size
    return units


class FrameCollector(Depacketizer):
    """For formats whose frames cannot be decoded in part (VP8, VP9): payloads from a frame's
    first packet to its last are joined; a lost packet or a timestamp change loses the frame."""

    def __init__(self) -> None:
        super().__init__()
        self._timestamp: int | None = None
        self._frame: bytearray | None = None

    @abstractmethod
    def _descriptor(self, payload: bytes, marker: bool) -> tuple[int, bool, bool] | None:
        """Payload descriptor size, and whether this packet starts / ends a frame; None if malformed."""

    def push(self, payload: bytes, marker: bool, timestamp: int, seq: int) -> list[DepacketizedUnit]:
        status = self._sequence_status(seq)
        if status is SequenceStatus.DUPLICATE:
            return []
        if status is SequenceStatus.GAP or timestamp != self._timestamp:
            self._frame = None
        self._timestamp = timestamp
        parsed = self._descriptor(payload, marker)
        if parsed is None:
            self._frame = None
            return []
        size, starts, ends = parsed
        if starts:
            self._frame = bytearray()
        if self._frame is None:
            return []
        self._frame += payload[size:]
        if len(self._frame) > MAX_UNIT_SIZE:
            self._frame = None
            return []
        if not ends:
            return []
        frame, self._frame = bytes(self._frame), None
        return [DepacketizedUnit(timestamp, frame)] if frame else []
