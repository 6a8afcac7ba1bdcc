"""Digest nonces: stateless to check, bounded to remember, and never valid after a restart.

A nonce is ``<issue time, hex>.<random>.<HMAC-SHA256(secret, time|random|client)[:32]>`` (the
random part keeps two challenges in the same millisecond apart) under a per-process
random secret: one from another server or from before a restart fails the HMAC (a fresh
challenge, not ``stale``); one that is authentic but older than ``lifetime`` is stale (RFC 7616
3.3 ``stale=true``: the client retries with the new nonce without asking its user). Bound to the
client address it was issued to.

Replays: with ``qop=auth`` each request carries a nonce count ``nc`` that must grow (RFC 7616
3.4). The book remembers, per client, the last count of its most recent ``max_per_client`` nonces
(and at most ``max_clients`` clients); a nonce it forgot is treated as stale, so forgetting never
lets a replay in.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections import OrderedDict
from enum import Enum

log = logging.getLogger("streamd")


class NonceState(Enum):
    FRESH = "fresh"
    STALE = "stale"  # authentic, but expired or forgotten: retry with a new one
    FOREIGN = "foreign"  # not ours (another server, a restart, or made up)
    REPLAYED = "replayed"  # a nonce count that does not grow


class NonceBook:
    def __init__(
        self,
        lifetime: float = 300.0,
        max_per_client: int = 16,
        max_clients: int = 4096,
        secret: bytes | None = None,
        adopt: bool = False,
    ) -> None:
        """``secret`` and ``adopt``: worker processes of one server share the secret, and a nonce
        a sibling issued (authentic, not expired) is taken into this book on first use instead of
        being stale: a client's next connection may land on another worker. Its counts are then
        kept by each worker that saw it."""
        self.adopt = adopt
        self.lifetime = lifetime
        self.max_per_client = max_per_client
        self.max_clients = max_clients
        self._secret = secret if secret is not None else os.urandom(32)
        # client -> nonce -> highest nonce count seen (0: issued, not used with qop yet)
        self._clients: OrderedDict[str, OrderedDict[str, int]] = OrderedDict()
        self._logged: set[str] = set()
        self.dropped = 0  # nonces forgotten because a client held too many (for metrics)

    def _mac(self, stamp: str, salt: str, client: str) -> str:
        return hmac.new(self._secret, f"{stamp}|{salt}|{client}".encode(), hashlib.sha256).hexdigest()[:32]

    def issue(self, client: str, now: float) -> str:
        stamp = f"{int(now * 1000):x}"
        salt = os.urandom(8).hex()
        nonce = f"{stamp}.{salt}.{self._mac(stamp, salt, client)}"
        book = self._clients.pop(client, None) or OrderedDict()
        self._clients[client] = book  # most recently used last
        book[nonce] = 0
        while len(book) > self.max_per_client:
            book.popitem(last=False)
            self.dropped += 1
            if client not in self._logged and len(self._logged) < self.max_clients:
                self._logged.add(client)  # once per client (bounded): a flood is one line each
                log.warning(
                    "client %s: more than %d Digest nonces; forgetting the oldest",
                    client,
                    self.max_per_client,
                )
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)
        return nonce

    def check(self, nonce: str, client: str, now: float, nc: int | None) -> NonceState:
        """Whether ``nonce`` (with count ``nc``, None without qop) may authenticate this request.

        Only call after the response was verified: counts advance here.
        """
        stamp, _, rest = nonce.partition(".")
        salt, _, mac = rest.partition(".")
        if len(stamp) > 16 or len(salt) != 16 or not mac.isascii():
            return NonceState.FOREIGN
        if not hmac.compare_digest(mac, self._mac(stamp, salt, client)):
            return NonceState.FOREIGN
        try:
            issued = int(stamp, 16) / 1000
        except ValueError:
            return NonceState.FOREIGN
        if not issued - 5 <= now <= issued + self.lifetime:  # 5 s: clocks of a restarted loop
            return NonceState.STALE
        book = self._clients.get(client)
        if (book is None or nonce not in book) and self.adopt:
            book = self._clients.setdefault(client, OrderedDict())
            book[nonce] = 0
            while len(book) > self.max_per_client:
                book.popitem(last=False)
        if book is None or nonce not in book:
            return NonceState.STALE
        if nc is not None:
            if nc <= book[nonce]:
                return NonceState.REPLAYED
            book[nonce] = nc
        return NonceState.FRESH
