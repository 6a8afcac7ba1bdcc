"""Users and their permissions from the config file's ``[[users]]``, and the policy they make.

Shape (issue 14; tools outside the project write it)::

    [[users]]
    name = "viewer"
    password = "streamd$1$..."   # what `streamd passwd viewer` prints
    networks = ["10.0.0.0/8"]    # optional: client addresses this user may come from
    permissions = [{ action = "read", path = "cams/*" }]

The user ``any`` is the anonymous one: what it may do needs no login, and every logged-in user may
do it too. Paths are globs with the ``[paths.*]`` rules (``fnmatch.fnmatchcase``; ``*`` also
crosses ``/``). Without any ``[[users]]`` the defaults apply: reading is open to everyone,
publishing, the API and metrics only from loopback.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from streamd.auth.model import ACTIONS, ANONYMOUS, Action
from streamd.auth.secrets import Secret, SecretError, parse_secret

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


class UsersError(ValueError):
    """A ``[[users]]`` entry that is wrong; the message says which and why."""


@dataclass(frozen=True)
class Permission:
    action: Action
    path: str = "*"  # a glob; server-wide actions (api, metrics) ignore it

    def covers(self, action: str, path: str) -> bool:
        if action != self.action:
            return False
        return action in ("api", "metrics") or _path_matches(self.path, path)


@dataclass(frozen=True)
class User:
    name: str
    secret: Secret | None = None  # None for the anonymous user
    networks: tuple[Network, ...] = ()  # empty: from anywhere
    permissions: tuple[Permission, ...] = ()

    def may(self, action: str, path: str, client: str) -> bool:
        if self.networks and not in_networks(client, self.networks):
            return False
        return any(p.covers(action, path) for p in self.permissions)


# What the defaults allow (no [[users]]): anyone reads, loopback publishes and administers.
DEFAULT_USERS: tuple[User, ...] = (
    User(ANONYMOUS, permissions=(Permission("read", "*"),)),
    User(
        ANONYMOUS,
        networks=LOOPBACK,
        permissions=(Permission("publish", "*"), Permission("api"), Permission("metrics")),
    ),
)


class Policy:
    """Who may do what: the answer to "may ``user`` do ``action`` on ``path`` from ``client``"."""

    def __init__(self, users: Iterable[User] = ()) -> None:
        users = tuple(users)
        self.configured = bool(users)  # False: the defaults, and nobody can log in
        self._entries = users or DEFAULT_USERS
        self._by_name = {u.name: u for u in users if u.name != ANONYMOUS}

    def user(self, name: str) -> User | None:
        """A user who can log in (never the anonymous one)."""
        return self._by_name.get(name)

    def permits(self, user: str, action: str, path: str, client: str) -> bool:
        """``user``'s own permissions, plus the anonymous user's (which everybody has)."""
        return any(u.may(action, path, client) for u in self._entries if u.name in (user, ANONYMOUS))

    def anyone_may(self, action: str, path: str, client: str) -> bool:
        """Whether some login could allow this (else 403 at once, no challenge)."""
        return any(u.may(action, path, client) for u in self._entries)


def _path_matches(pattern: str, path: str) -> bool:
    pattern = pattern.strip("/")
    return pattern == path or fnmatch.fnmatchcase(path, pattern)


def in_networks(address: str, networks: Iterable[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == n.version and ip in n for n in networks)


def parse_users(entries: Any, realm: str) -> tuple[User, ...]:
    """The ``[[users]]`` array of tables, checked; plain-text passwords are refused."""
    if not isinstance(entries, list):
        raise UsersError("[[users]] must be an array of tables")
    users: list[User] = []
    seen: set[str] = set()
    for number, entry in enumerate(entries, 1):
        where = f"[[users]] #{number}"
        if not isinstance(entry, dict):
            raise UsersError(f"{where} must be a table")
        unknown = set(entry) - {"name", "password", "networks", "permissions"}
        if unknown:
            raise UsersError(f"{where}: unknown setting(s) {sorted(unknown)}")
        name = entry.get("name")
        if not isinstance(name, str) or not name or any(c in name for c in ':"\\\r\n\0'):
            raise UsersError(f'{where}: name must be a non-empty string without : " or \\')
        where = f"user {name!r}"
        if name in seen:
            raise UsersError(f"{where} is defined twice")
        seen.add(name)
        users.append(
            User(
                name,
                _secret(entry.get("password"), name, realm, where),
                _networks(entry.get("networks", []), where),
                _permissions(entry.get("permissions", []), where),
            )
        )
    return tuple(users)


def _secret(value: Any, name: str, realm: str, where: str) -> Secret | None:
    if name == ANONYMOUS:
        if value is not None:
            raise UsersError(f"{where} is the anonymous user: it has no password")
        return None
    if not isinstance(value, str) or not value:
        raise UsersError(f"{where}: password is missing (run `streamd passwd {name}` to make one)")
    try:
        secret = parse_secret(value)
    except SecretError as exc:
        raise UsersError(
            f"{where}: password must be what `streamd passwd {name}` prints, never the password itself"
            f" ({exc})"
        ) from None
    if secret.realm != realm:
        raise UsersError(
            f"{where}: password was made for realm {secret.realm!r} but the server's realm is {realm!r}"
            f" (run `streamd passwd --realm {realm!r} {name}`)"
        )
    return secret


def _networks(value: Any, where: str) -> tuple[Network, ...]:
    if isinstance(value, str) or not isinstance(value, list):
        raise UsersError(f'{where}: networks must be a list, e.g. ["10.0.0.0/8"]')
    try:
        return tuple(ipaddress.ip_network(n, strict=False) for n in value)
    except (TypeError, ValueError) as exc:
        raise UsersError(f"{where}: networks: {exc}") from None


def _permissions(value: Any, where: str) -> tuple[Permission, ...]:
    if not isinstance(value, list):
        raise UsersError(f"{where}: permissions must be a list of {{ action, path }} tables")
    result = []
    for item in value:
        if not isinstance(item, dict) or set(item) - {"action", "path"}:
            raise UsersError(f"{where}: each permission is {{ action = ..., path = ... }}")
        action, path = item.get("action"), item.get("path", "*")
        if action not in ACTIONS:
            raise UsersError(f"{where}: action must be one of {', '.join(ACTIONS)}, not {action!r}")
        if not isinstance(path, str):
            raise UsersError(f'{where}: path must be a string (a glob like "cams/*")')
        result.append(Permission(action, path))
    return tuple(result)
