"""The ``Authorization`` header (RFC 7235 2.1, RFC 7616 3.4, RFC 7617 2, RFC 7826 19.1).

``credentials = auth-scheme [ 1*SP ( token68 / #auth-param ) ]``, ``auth-param = token BWS "="
BWS ( token / quoted-string )``. Parsed strictly: anything else is :class:`CredentialsError`,
which the server answers with a fresh challenge. Bounded: at most ``MAX_LENGTH`` characters.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field

MAX_LENGTH = 4096
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_SCHEME = re.compile(rf"({_TOKEN})(?:[ ]+|$)")
_PARAM = re.compile(
    rf'[ \t]*({_TOKEN})[ \t]*=[ \t]*({_TOKEN}|"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[^\x00\r\n])*")[ \t]*'
)
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


class CredentialsError(ValueError):
    """An ``Authorization`` header that does not follow the grammar (the reason is for the log)."""


@dataclass(frozen=True)
class Basic:
    username: str
    password: str


@dataclass(frozen=True)
class Digest:
    params: dict[str, str] = field(default_factory=dict)  # names lower case, values unquoted

    def __getitem__(self, name: str) -> str:
        return self.params[name]

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.params.get(name, default)


def parse_authorization(value: str) -> Basic | Digest:
    """Basic or Digest credentials; other schemes and malformed headers are CredentialsError."""
    if len(value) > MAX_LENGTH:
        raise CredentialsError("Authorization header too long")
    value = value.strip(" \t")
    match = _SCHEME.match(value)
    if match is None:
        raise CredentialsError("Authorization without a scheme")
    scheme, rest = match.group(1).lower(), value[match.end() :]
    if scheme == "basic":
        return _basic(rest.strip(" \t"))
    if scheme == "digest":
        return Digest(_params(rest))
    raise CredentialsError(f"unsupported authentication scheme {match.group(1)[:20]!r}")


def _basic(token: str) -> Basic:
    if not _TOKEN68.fullmatch(token):
        raise CredentialsError("Basic credentials are not base64")
    try:
        decoded = base64.b64decode(token, validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise CredentialsError("Basic credentials are not base64 of UTF-8 text") from exc
    user, colon, password = decoded.partition(":")
    if not colon:
        raise CredentialsError("Basic credentials without ':'")
    return Basic(user, password)


def _params(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    position = 0
    while True:
        match = _PARAM.match(text, position)
        if match is None:
            raise CredentialsError("malformed Digest parameter")
        name, raw = match.group(1).lower(), match.group(2)
        if name in params:
            raise CredentialsError(f"Digest parameter {name!r} given twice")
        params[name] = re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith('"') else raw
        position = match.end()
        if position == len(text):
            return params
        if text[position] != ",":
            raise CredentialsError("Digest parameters must be separated by ','")
        position += 1
        while position < len(text) and text[position] in " \t,":  # empty list elements are allowed
            position += 1
        if position == len(text):
            return params


def quote(value: str) -> str:
    """A quoted-string (RFC 7230 3.2.6)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
