"""HTTP/RTSP Digest (RFC 7616; RFC 2617's MD5 and RFC 2069's no-qop form still accepted): challenges
and the expected ``response``, from a stored HA1 so the server never holds a password."""

from __future__ import annotations

import hashlib

from streamd.auth.credentials import quote

ALGORITHMS = ("SHA-256", "MD5")  # offered in this order (RFC 7616 3.7: preferred first)
_SESS = {"SHA-256-SESS": "SHA-256", "MD5-SESS": "MD5"}


def hash_hex(algorithm: str, text: str) -> str:
    h = hashlib.sha256 if algorithm.upper().startswith("SHA-256") else hashlib.md5
    return h(text.encode("utf-8")).hexdigest()


def base_algorithm(name: str | None) -> str | None:
    """``MD5``/``SHA-256`` for a known algorithm name (absent means MD5), None otherwise."""
    upper = (name or "MD5").upper()
    if upper in ALGORITHMS:
        return upper
    return _SESS.get(upper)


def expected_response(
    algorithm: str,
    ha1: str,
    *,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None,
    nc: str | None,
    cnonce: str | None,
) -> str:
    """The ``response`` a client knowing the password sends (RFC 7616 3.4.1-3.4.3)."""
    if algorithm.upper().endswith("-SESS"):
        ha1 = hash_hex(algorithm, f"{ha1}:{nonce}:{cnonce}")
    ha2 = hash_hex(algorithm, f"{method}:{uri}")
    if qop is None:
        return hash_hex(algorithm, f"{ha1}:{nonce}:{ha2}")
    return hash_hex(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def challenges(realm: str, nonce: str, *, stale: bool = False, basic: bool = False) -> list[str]:
    """``WWW-Authenticate`` values: SHA-256 first, then MD5 (each naming its algorithm, since some
    clients keep parameters across challenges), then Basic if allowed."""
    values = [
        f'Digest realm={quote(realm)}, nonce={quote(nonce)}, algorithm={algorithm}, qop="auth"'
        + (", stale=true" if stale else "")
        for algorithm in ALGORITHMS
    ]
    if basic:
        values.append(f"Basic realm={quote(realm)}")
    return values
