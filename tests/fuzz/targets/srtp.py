"""Key exchange of issue 15: MIKEY messages (binary, as the ``KeyMgmt`` header and
``a=key-mgmt`` carry them after base64), ``KeyMgmt`` headers and SDES ``a=crypto`` values."""

from __future__ import annotations

from streamd.srtp.mikey import MikeyError, build_mikey, parse_key_mgmt, parse_mikey
from streamd.srtp.sdes import SdesError, format_crypto, parse_crypto

from .common import header_text


def fuzz_mikey(data: bytes) -> None:
    """``parse_mikey``: a message or MikeyError; what it returns builds into a message that parses
    back to the same key and crypto sessions."""
    try:
        message = parse_mikey(data)
    except MikeyError:
        return
    again = parse_mikey(build_mikey(message.key, list(message.sessions), message.csb_id, 0, bytes(16)))
    assert again.key == message.key and again.sessions == message.sessions


def fuzz_key_mgmt(data: bytes) -> None:
    """``parse_key_mgmt``: entries (each with prot and data) or MikeyError."""
    try:
        entries = parse_key_mgmt(header_text(data))
    except MikeyError:
        return
    assert entries and all(e.prot and e.data is not None for e in entries)


def fuzz_crypto(data: bytes) -> None:
    """``parse_crypto``: an attribute or SdesError; written again it parses to the same."""
    try:
        attribute = parse_crypto(header_text(data))
    except SdesError:
        return
    assert parse_crypto(format_crypto(attribute)) == attribute
