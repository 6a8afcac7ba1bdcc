"""SDES: the SDP ``a=crypto`` attribute (RFC 4568), parsed and written.

``<tag> <suite> inline:<base64 key||salt>[|<lifetime>][|<mki>:<length>][;inline:...] [params]``.
What we refuse, with the reason, rather than half-honour: several keys (they only make sense
with MKIs), MKIs (libsrtp's binding here has no MKI support), a lifetime under 2^31 packets (we
never re-key inside a session) and session parameters that change the packet format
(``UNENCRYPTED_SRTP``, ``KDR``, ``FEC_ORDER``, ...). ``WSH`` (a replay-window hint) is taken.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from streamd.srtp.suites import MasterKey, suite_named

__all__ = ["CryptoAttribute", "SdesError", "format_crypto", "parse_crypto"]

MIN_LIFETIME = 1 << 31
_TAG = re.compile(r"[0-9]{1,9}")
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_LIFETIME = re.compile(r"(2\^)?([0-9]{1,20})")
_WSH = re.compile(r"WSH=([0-9]{1,10})")


class SdesError(ValueError):
    """An ``a=crypto`` we cannot use; the message says why (for the 4xx reason and the log)."""


@dataclass(frozen=True)
class CryptoAttribute:
    tag: int
    key: MasterKey
    lifetime: int | None = None  # packets
    window: int | None = None  # WSH: the replay window the sender asks for


def parse_crypto(value: str) -> CryptoAttribute:
    """The value after ``a=crypto:``; SdesError when it is malformed or asks for what we refuse."""
    fields = value.strip().split()
    if len(fields) < 3:
        raise SdesError(f"a=crypto needs a tag, a suite and key parameters: {value[:80]!r}")
    tag_text, suite_name, key_params, *session_params = fields
    if not _TAG.fullmatch(tag_text):
        raise SdesError(f"invalid a=crypto tag {tag_text[:12]!r}")
    suite = suite_named(suite_name)
    if suite is None:
        raise SdesError(f"crypto suite {suite_name[:40]!r} is not supported")
    if ";" in key_params:
        raise SdesError("several keys in one a=crypto (MKI rollover) are not supported")
    method, colon, info = key_params.partition(":")
    if not colon or method.lower() != "inline":
        raise SdesError(f"key method {method[:20]!r} is not supported (only inline)")
    key_salt, *extras = info.split("|")
    if not _BASE64.fullmatch(key_salt):
        raise SdesError("the inline key is not base64")
    try:
        material = base64.b64decode(key_salt + "=" * (-len(key_salt) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SdesError(f"the inline key is not base64: {exc}") from None
    if len(material) != suite.material_len:
        raise SdesError(f"{suite.name} needs {suite.material_len} bytes of key and salt, not {len(material)}")
    lifetime = None
    for extra in extras:
        if ":" in extra:
            raise SdesError("MKI is not supported")
        match = _LIFETIME.fullmatch(extra)
        if match is None or lifetime is not None:
            raise SdesError(f"invalid key lifetime {extra[:24]!r}")
        number = int(match.group(2))
        if match.group(1):
            if number > 64:
                raise SdesError(f"invalid key lifetime {extra[:24]!r}")
            number = 1 << number
        if number < MIN_LIFETIME:
            raise SdesError(f"key lifetime {extra[:24]} is below 2^31 packets (no re-keying here)")
        lifetime = number
    window = None
    for param in session_params:
        wsh = _WSH.fullmatch(param)
        if wsh is None:
            raise SdesError(f"session parameter {param[:30]!r} is not supported")
        window = int(wsh.group(1))
    return CryptoAttribute(int(tag_text), MasterKey(suite, material), lifetime, window)


def format_crypto(attribute: CryptoAttribute) -> str:
    """The value of ``a=crypto:`` (no lifetime written unless set: the suite's default applies)."""
    inline = base64.b64encode(attribute.key.material).decode("ascii")
    text = f"{attribute.tag} {attribute.key.suite.name} inline:{inline}"
    if attribute.lifetime is not None:
        exponent = attribute.lifetime.bit_length() - 1
        text += f"|2^{exponent}" if attribute.lifetime == 1 << exponent else f"|{attribute.lifetime}"
    if attribute.window is not None:
        text += f" WSH={attribute.window}"
    return text
