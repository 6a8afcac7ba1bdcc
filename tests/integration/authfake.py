"""A small table-driven Authorizer (Basic only) standing in for the local users in HTTP tests."""

from __future__ import annotations

import base64
import binascii
import fnmatch

from streamd.auth.model import ANONYMOUS, AuthRequest, AuthResult

CHALLENGE = ('Basic realm="streamd"',)
# two users as the issue has them: one reads cams/* only, one administers and reads everything
USERS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "viewer": ("vpass", [("read", "cams/*")]),
    "admin": ("apass", [("read", "*"), ("api", ""), ("metrics", "")]),
    ANONYMOUS: ("", [("read", "open/*")]),
}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


class TableAuthorizer:
    def __init__(self) -> None:
        self.asked: list[AuthRequest] = []
        self.used: set[str] = set()  # "Digest <user> <nonce>" answers, each good once (replays)

    def may(self, user: str, action: str, path: str, client: str) -> bool:
        return any(
            a == action and (not p or fnmatch.fnmatchcase(path, p)) for a, p in USERS.get(user, ("", []))[1]
        )

    async def authorize(self, request: AuthRequest, now: float) -> AuthResult:
        self.asked.append(request)
        user = ANONYMOUS
        if request.authorization is not None and request.authorization.startswith("Digest "):
            if request.authorization in self.used:
                return AuthResult(False, status=401, challenges=CHALLENGE, reason="replayed")
            self.used.add(request.authorization)
            user = request.authorization.split()[1]
            if user not in USERS:
                return AuthResult(False, status=401, challenges=CHALLENGE, reason="unknown user")
        elif request.authorization is not None:
            scheme, _, value = request.authorization.partition(" ")
            try:
                name, _, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return AuthResult(False, status=401, challenges=CHALLENGE, reason="malformed")
            if scheme.lower() != "basic" or name not in USERS or USERS[name][0] != password:
                return AuthResult(False, status=401, challenges=CHALLENGE, reason="wrong credentials")
            user = name
        for action, pattern in USERS[user][1]:
            if action == request.action and (not pattern or fnmatch.fnmatchcase(request.path, pattern)):
                return AuthResult(True, user)
        if user == ANONYMOUS:
            return AuthResult(False, status=401, challenges=CHALLENGE, reason="login needed")
        return AuthResult(False, user, status=403, reason="no permission")
