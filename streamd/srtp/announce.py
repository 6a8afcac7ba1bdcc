"""A publisher's keys in its ANNOUNCE: SDES ``a=crypto`` and MIKEY ``a=key-mgmt`` per media
section (or MIKEY at session level for every section), as RFC 4568 and RFC 4567 put them; and
which sections may be told a key of ours for what we send back (RTCP)."""

from __future__ import annotations

from sdp.model import SessionDescription
from streamd.srtp.mikey import MikeyError, parse_mikey_base64
from streamd.srtp.sdes import SdesError, parse_crypto
from streamd.srtp.suites import MasterKey

__all__ = ["AnnouncedKeyError", "announced_keys", "mikey_sections"]

SRTP_PROTOS = ("RTP/SAVP", "RTP/SAVPF")


class AnnouncedKeyError(ValueError):
    """Keys in an SDP that cannot be used (malformed, or asking for what we refuse)."""


def _mikey(value: str | None) -> MasterKey | None:
    if value is None:
        return None
    method, _, data = value.strip().partition(" ")
    if method.lower() != "mikey":
        raise AnnouncedKeyError(f"key management {method[:20]!r} is not supported (only mikey)")
    return parse_mikey_base64(data).key


def announced_keys(description: SessionDescription) -> dict[int, MasterKey]:
    """Keys by media section index (position in the SDP); AnnouncedKeyError when one cannot be used."""
    keys: dict[int, MasterKey] = {}
    try:
        session_key = _mikey(description.get("key-mgmt"))
        for position, media in enumerate(description.media):
            cryptos = [c for c in media.get_all("crypto") if c is not None]
            key = _mikey(media.get("key-mgmt")) or (parse_crypto(cryptos[0]).key if cryptos else None)
            key = key or session_key
            if key is not None:
                keys[position] = key
    except (MikeyError, SdesError) as exc:
        raise AnnouncedKeyError(str(exc)) from None
    return keys


def mikey_sections(description: SessionDescription) -> list[int]:
    """Media sections (positions) whose publisher learns keys by MIKEY (RFC 4567), so it can be
    told ours in a ``KeyMgmt`` header: those keyed by ``a=key-mgmt``, and RTP/SAVP(F) ones with no
    key yet (GStreamer's rtspclientsink gives its key in the SETUP's ``KeyMgmt``). A section keyed
    by SDES ``a=crypto`` is not among them: an ANNOUNCE has no SDP answer to carry our key, so
    such a publisher knows only its own. Same precedence as :func:`announced_keys`."""
    session_mikey = description.get("key-mgmt") is not None
    sections = []
    for position, media in enumerate(description.media):
        sdes = any(c is not None for c in media.get_all("crypto"))
        keyless_savp = media.proto.upper() in SRTP_PROTOS
        if media.get("key-mgmt") is not None or (not sdes and (session_mikey or keyless_savp)):
            sections.append(position)
    return sections
