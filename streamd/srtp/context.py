"""libsrtp (through pylibsrtp) for one direction of one key: protect what we send, unprotect
what a client sends, counting what fails authentication or replays an index."""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass

import pylibsrtp

from streamd.srtp.suites import MasterKey

__all__ = ["SRTP_STATS", "Protector", "SrtpStats", "Unprotector"]

REPLAY_WINDOW = 1024  # packets; UDP reorders, and live readers may lag behind a keyframe burst
MAX_PACKET = 65536 + pylibsrtp.SRTP_MAX_SRTCP_TRAILER_LEN  # a UDP datagram and the longest trailer


@dataclass
class SrtpStats:
    """Process-wide counters for /metrics (one event loop, so plain integers)."""

    protected: int = 0
    unprotected: int = 0
    auth_failed: int = 0  # bad tag, or not SRTP at all (e.g. a plain RTCP report)
    replayed: int = 0
    malformed: int = 0  # too short, unknown SSRC context, not parseable
    unkeyed: int = 0  # from a client that gave no key of its own (plain RTCP in an SRTP session)

    def drop(self, error: pylibsrtp.Error) -> None:
        text = str(error)
        if "replay" in text:
            self.replayed += 1
        elif "auth" in text:
            self.auth_failed += 1
        else:
            self.malformed += 1


SRTP_STATS = SrtpStats()


def _session(key: MasterKey, ssrc_type: int, *, large: bool = True) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(key=key.material, ssrc_type=ssrc_type, srtp_profile=key.suite.profile)
    policy.window_size = REPLAY_WINDOW
    session = pylibsrtp.Session(policy)
    if large:
        # pylibsrtp 1.0 works in a 1500-byte buffer and keeps 144 bytes of it for a trailer with
        # the longest MKI, so it refuses packets over 1356 bytes; ours reach 12 + max_payload_size
        # (1400 by default, up to 65000). A larger buffer of the same kind lifts that limit.
        session._cdata = pylibsrtp.ffi.new("char[]", MAX_PACKET)
        session._buffer = pylibsrtp.ffi.buffer(session._cdata)
    return session


class _Scratch(threading.local):
    """One working buffer per thread for every Protector: a buffer per session (300 x 64 KiB)
    would make each protect's copy land in memory no cache holds."""

    def __init__(self) -> None:
        self.buffer = ctypes.create_string_buffer(MAX_PACKET)
        self.length = ctypes.c_int(0)
        self.length_ref = ctypes.byref(self.length)


_SCRATCH = _Scratch()


def _gil_keeping_protect() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    """libsrtp's ``srtp_protect`` from pylibsrtp's own library, called with the GIL held.

    cffi releases the GIL around every C call. Protecting one packet takes ~3 µs, but giving the
    GIL away per packet lets any other thread (a file's reader, an executor) take it, and getting it
    back costs a thread switch: measured, SRTP then cost 25 µs per packet instead of 15. ``PyDLL``
    calls keep the GIL. None when the symbol is not there (then pylibsrtp's call is used)."""
    try:
        lib = ctypes.PyDLL(pylibsrtp._binding.__file__)
        protect = lib.srtp_protect  # libsrtp 2: (srtp_t ctx, void *rtp, int *len)
    except (OSError, AttributeError):
        return None
    protect.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
    protect.restype = ctypes.c_int
    return protect


_PROTECT = _gil_keeping_protect()
_LARGEST = MAX_PACKET - pylibsrtp.SRTP_MAX_TRAILER_LEN  # room for the tag in the scratch buffer


def _error(status: int) -> pylibsrtp.Error:
    return pylibsrtp.Error(pylibsrtp.ERRORS[status] if status < len(pylibsrtp.ERRORS) else str(status))


class Protector:
    """Protects every stream (any SSRC) we send under one master key: RTP and RTCP."""

    def __init__(self, key: MasterKey, stats: SrtpStats = SRTP_STATS) -> None:
        self.key = key
        self._session = _session(key, pylibsrtp.Policy.SSRC_ANY_OUTBOUND, large=_PROTECT is None)
        self._stats = stats
        self._ctx = int(pylibsrtp.ffi.cast("uintptr_t", self._session._srtp[0]))

    def rtp(self, packet: bytes) -> bytes:
        self._stats.protected += 1
        return self._protect(packet)

    def rtp_many(self, packets: list[bytes]) -> list[bytes]:
        """An access unit's packets: the same as ``rtp`` on each, with the lookups done once."""
        self._stats.protected += len(packets)
        if _PROTECT is None:
            return [self._protect(p) for p in packets]
        scratch, ctx, protect = _SCRATCH, self._ctx, _PROTECT
        buffer, length, length_ref = scratch.buffer, scratch.length, scratch.length_ref
        memmove, string_at, limit = ctypes.memmove, ctypes.string_at, _LARGEST
        out = []
        for packet in packets:
            size = len(packet)
            if size > limit:
                out.append(self._session.protect(packet))
                continue
            memmove(buffer, packet, size)
            length.value = size
            status = protect(ctx, buffer, length_ref)
            if status:
                raise _error(status)
            out.append(string_at(buffer, length.value))
        return out

    def _protect(self, packet: bytes) -> bytes:
        if _PROTECT is None or len(packet) > _LARGEST:
            return self._session.protect(packet)
        scratch = _SCRATCH
        buffer, length = scratch.buffer, scratch.length
        ctypes.memmove(buffer, packet, len(packet))
        length.value = len(packet)
        status = _PROTECT(self._ctx, buffer, scratch.length_ref)
        if status:
            raise _error(status)
        return ctypes.string_at(buffer, length.value)

    def rtcp(self, packet: bytes) -> bytes:
        return self._session.protect_rtcp(packet)


class Unprotector:
    """Checks and decrypts what a client sends under its key; None for what must be dropped."""

    def __init__(self, key: MasterKey, stats: SrtpStats = SRTP_STATS) -> None:
        self.key = key
        self._session = _session(key, pylibsrtp.Policy.SSRC_ANY_INBOUND)
        self._stats = stats
        self.dropped = 0

    def rtp(self, packet: bytes) -> bytes | None:
        try:
            clear = self._session.unprotect(packet)
        except pylibsrtp.Error as exc:
            self._drop(exc)
            return None
        self._stats.unprotected += 1
        return clear

    def rtcp(self, packet: bytes) -> bytes | None:
        try:
            clear = self._session.unprotect_rtcp(packet)
        except pylibsrtp.Error as exc:
            self._drop(exc)
            return None
        self._stats.unprotected += 1
        return clear

    def _drop(self, error: pylibsrtp.Error) -> None:
        self.dropped += 1
        self._stats.drop(error)
