"""The one string ``streamd passwd`` prints: what Digest needs (HA1 per algorithm) and a Basic hash.

Format (``$``-separated, no ``$`` in any field)::

    streamd$1$<realm>$<MD5 HA1 hex>$<SHA-256 HA1 hex>$scrypt$n=<N>,r=<r>,p=<p>$<salt b64>$<hash b64>

Digest never needs the password itself, only ``H(user:realm:password)`` (RFC 7616 3.4.2), so the
HA1 of each algorithm is stored for the realm the server announces; since the user name is part of
HA1, the string is made for one user. Basic gets the password in clear from the client and checks
it against scrypt (stdlib ``hashlib.scrypt``), never against the HA1s (fast to brute-force).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass

PREFIX = "streamd$1$"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_HEX = {"md5": re.compile(r"[0-9a-f]{32}"), "sha256": re.compile(r"[0-9a-f]{64}")}
_PARAMS = re.compile(r"n=(\d+),r=(\d+),p=(\d+)")


class SecretError(ValueError):
    """A stored password string that is not one ``streamd passwd`` printed."""


@dataclass(frozen=True)
class Secret:
    realm: str
    ha1_md5: str
    ha1_sha256: str
    scrypt_params: tuple[int, int, int]
    salt: bytes
    scrypt_hash: bytes

    def ha1(self, algorithm: str) -> str:
        """The stored HA1 for ``MD5`` or ``SHA-256`` (the ``-sess`` variants start from it too)."""
        return self.ha1_sha256 if algorithm.upper().startswith("SHA-256") else self.ha1_md5

    def check_password(self, password: str) -> bool:
        """Whether ``password`` (sent with Basic) is the one this string was made from."""
        n, r, p = self.scrypt_params
        try:
            got = hashlib.scrypt(password.encode(), salt=self.salt, n=n, r=r, p=p, maxmem=2**26, dklen=32)
        except (ValueError, MemoryError):
            return False
        return hmac.compare_digest(got, self.scrypt_hash)


def ha1(algorithm: str, user: str, realm: str, password: str) -> str:
    h = hashlib.sha256 if algorithm.upper().startswith("SHA-256") else hashlib.md5
    return h(f"{user}:{realm}:{password}".encode()).hexdigest()


def make_secret(user: str, password: str, realm: str, salt: bytes | None = None) -> str:
    """The string for the config's ``password`` (``salt``: tests pass a fixed one)."""
    if "$" in realm:
        raise SecretError("the realm cannot contain '$'")
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=2**26, dklen=32
    )
    b64 = base64.b64encode
    return "$".join(
        [
            "streamd",
            "1",
            realm,
            ha1("MD5", user, realm, password),
            ha1("SHA-256", user, realm, password),
            "scrypt",
            f"n={SCRYPT_N},r={SCRYPT_R},p={SCRYPT_P}",
            b64(salt).decode(),
            b64(digest).decode(),
        ]
    )


def parse_secret(text: str) -> Secret:
    """Read a string ``make_secret`` made; SecretError says what is wrong (never echoes the value)."""
    if not isinstance(text, str) or not text.startswith(PREFIX):
        raise SecretError("not a string printed by `streamd passwd`")
    parts = text.split("$")
    if len(parts) != 9 or parts[5] != "scrypt":
        raise SecretError("malformed `streamd passwd` string (wrong number of fields)")
    _, _, realm, md5, sha256, _, params, salt, digest = parts
    if not _HEX["md5"].fullmatch(md5) or not _HEX["sha256"].fullmatch(sha256):
        raise SecretError("malformed `streamd passwd` string (HA1 fields)")
    match = _PARAMS.fullmatch(params)
    if match is None:
        raise SecretError("malformed `streamd passwd` string (scrypt parameters)")
    n, r, p = (int(g) for g in match.groups())
    if n < 2 or n & (n - 1) or n > 2**20 or not 1 <= r <= 32 or not 1 <= p <= 16:
        raise SecretError("scrypt parameters out of range")
    try:
        salt_bytes = base64.b64decode(salt, validate=True)
        hash_bytes = base64.b64decode(digest, validate=True)
    except ValueError as exc:
        raise SecretError("malformed `streamd passwd` string (base64)") from exc
    if len(hash_bytes) != 32 or not salt_bytes:
        raise SecretError("malformed `streamd passwd` string (hash length)")
    return Secret(realm, md5, sha256, (n, r, p), salt_bytes, hash_bytes)
