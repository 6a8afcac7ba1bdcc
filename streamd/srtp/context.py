"""libsrtp (through pylibsrtp) for one direction of one key: protect what we send, unprotect
what a client sends, counting what fails authentication or replays an index."""

from __future__ import annotations

from dataclasses import dataclass

import pylibsrtp

from streamd.srtp.suites import MasterKey

__all__ = ["SRTP_STATS", "Protector", "SrtpStats", "Unprotector"]

REPLAY_WINDOW = 1024  # packets; UDP reorders, and live readers may lag behind a keyframe burst


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


def _session(key: MasterKey, ssrc_type: int) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(key=key.material, ssrc_type=ssrc_type, srtp_profile=key.suite.profile)
    policy.window_size = REPLAY_WINDOW
    return pylibsrtp.Session(policy)


class Protector:
    """Protects every stream (any SSRC) we send under one master key: RTP and RTCP."""

    def __init__(self, key: MasterKey, stats: SrtpStats = SRTP_STATS) -> None:
        self.key = key
        self._session = _session(key, pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        self._stats = stats

    def rtp(self, packet: bytes) -> bytes:
        self._stats.protected += 1
        return self._session.protect(packet)

    def rtp_many(self, packets: list[bytes]) -> list[bytes]:
        self._stats.protected += len(packets)
        protect = self._session.protect
        return [protect(p) for p in packets]

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
