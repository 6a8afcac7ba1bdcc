"""The SRTP state of one RTSP session: the keys it sends with (from its DESCRIBE's offer) and,
by track, the client's keys for what the client sends (MIKEY in SETUP's ``KeyMgmt``, or the
``a=crypto``/``a=key-mgmt`` of a publisher's ANNOUNCE)."""

from __future__ import annotations

from dataclasses import dataclass, field

from streamd.srtp.context import SRTP_STATS, Protector, Unprotector
from streamd.srtp.mikey import MikeyError, parse_key_mgmt, parse_mikey_base64
from streamd.srtp.offer import KeyOffer
from streamd.srtp.suites import MasterKey

__all__ = ["SessionSrtp", "client_key"]


@dataclass
class SessionSrtp:
    offer: KeyOffer = field(default_factory=KeyOffer)
    inbound: dict[int, Unprotector] = field(default_factory=dict)
    feedback: dict[int, Protector] = field(default_factory=dict)  # RTCP to a publisher, by track

    def receive_with(self, index: int, key: MasterKey) -> None:
        self.inbound[index] = Unprotector(key)

    def rtcp_in(self, index: int, data: bytes) -> bytes | None:
        """A client's SRTCP checked and decrypted; None (dropped, counted) when it cannot be."""
        unprotector = self.inbound.get(index)
        if unprotector is None:  # no key from the client (ffmpeg sends plain RTCP): cannot be trusted
            SRTP_STATS.unkeyed += 1
            return None
        return unprotector.rtcp(data)

    def rtcp_to_publisher(self, index: int, data: bytes, ours: MasterKey | None = None) -> bytes | None:
        """Our RTCP (RR + PLI) to a publisher's SRTP track as SRTCP: under ``ours``, the key we told
        it in ``KeyMgmt`` (MIKEY publishers), else under the key it gave (SDES: the one key both
        ends know; our SSRC differs from its own, RFC 3711 9.1). None for a track without its key
        (not SRTP: nothing to protect with)."""
        unprotector = self.inbound.get(index)
        if unprotector is None:
            return None
        key = ours or unprotector.key
        protector = self.feedback.get(index)
        if protector is None or protector.key != key:
            protector = self.feedback[index] = Protector(key)
        return protector.rtcp(data)

    def rtp_in(self, index: int, data: bytes) -> bytes | None:
        unprotector = self.inbound.get(index)
        if unprotector is None:
            SRTP_STATS.unkeyed += 1
            return None
        return unprotector.rtp(data)


def client_key(header: str) -> MasterKey:
    """The key in a ``KeyMgmt`` header's first MIKEY entry; MikeyError when there is none usable."""
    for entry in parse_key_mgmt(header):
        if entry.prot == "mikey":
            return parse_mikey_base64(entry.data).key
    raise MikeyError("KeyMgmt without a MIKEY entry")
