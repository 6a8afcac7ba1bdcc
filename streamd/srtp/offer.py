"""Keys a DESCRIBE offers and a session then uses: SDES ``a=crypto`` and MIKEY ``a=key-mgmt`` in
the SDP, one master key and SSRC per track, minted for the session the client is about to set up.

The SDP comes before the session exists, so the offer is kept per connection and path until its
first SETUP takes it (a later session without a new DESCRIBE gets fresh keys it learns from the
SETUP reply's ``KeyMgmt`` header). Sans-I/O: time and randomness come in as arguments or from
:mod:`secrets` only.
"""

from __future__ import annotations

import base64
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field

from sdp.model import SessionDescription
from streamd.srtp.mikey import CryptoSession, build_mikey
from streamd.srtp.sdes import CryptoAttribute, format_crypto
from streamd.srtp.suites import DEFAULT_SUITE, MasterKey, Suite

__all__ = ["MAX_OFFERS_PER_CONNECTION", "KeyOffer", "OfferBook", "TrackKey", "add_keys_to_sdp"]

MAX_OFFERS_PER_CONNECTION = 8


@dataclass(frozen=True)
class TrackKey:
    """What we send one track with: its master key and the SSRC the MIKEY map names."""

    key: MasterKey
    ssrc: int

    @classmethod
    def generate(cls, suite: Suite = DEFAULT_SUITE) -> TrackKey:
        return cls(MasterKey.generate(suite), secrets.randbits(32))

    def mikey(self, ntp: int) -> bytes:
        return build_mikey(
            self.key, [CryptoSession(0, self.ssrc)], secrets.randbits(32), ntp, secrets.token_bytes(16)
        )


@dataclass
class KeyOffer:
    """The keys one DESCRIBE offered, by track index."""

    tracks: dict[int, TrackKey] = field(default_factory=dict)

    def key_for(self, index: int, suite: Suite = DEFAULT_SUITE) -> TrackKey:
        key = self.tracks.get(index)
        if key is None:
            key = self.tracks[index] = TrackKey.generate(suite)
        return key


class OfferBook:
    """One connection's open offers by path, at most :data:`MAX_OFFERS_PER_CONNECTION` (oldest out)."""

    def __init__(self) -> None:
        self._offers: OrderedDict[str, KeyOffer] = OrderedDict()

    def offer(self, path: str, track_indexes: list[int]) -> KeyOffer:
        offer = KeyOffer({i: TrackKey.generate() for i in track_indexes})
        self._offers.pop(path, None)
        self._offers[path] = offer
        while len(self._offers) > MAX_OFFERS_PER_CONNECTION:
            self._offers.popitem(last=False)
        return offer

    def has(self, path: str) -> bool:
        return path in self._offers

    def take(self, path: str) -> KeyOffer | None:
        """The offer for ``path``, now the session's own: nobody else gets these keys."""
        return self._offers.pop(path, None)


def add_keys_to_sdp(description: SessionDescription, offer: KeyOffer, indexes: list[int], ntp: int) -> None:
    """Mark each media section SAVP and give its keys both ways (``indexes``: track per section)."""
    for media, index in zip(description.media, indexes, strict=True):
        key = offer.key_for(index)
        media.proto = "RTP/SAVP"
        media.add("crypto", format_crypto(CryptoAttribute(1, key.key)))
        media.add("key-mgmt", "mikey " + base64.b64encode(key.mikey(ntp)).decode("ascii"))
