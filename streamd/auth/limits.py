"""Login back-off: failed logins per client address and per user name, sans-I/O (``now`` is given).

After ``free_failures`` failed logins in a row a key (an address, or a user name) is blocked for
``backoff`` seconds, doubling with each further failure up to ``max_backoff``; while blocked every
request is answered 503 with ``Retry-After`` before any password is checked. A success clears the
client's and the user's record. At most ``max_keys`` keys are remembered (oldest forgotten first),
so a flood of addresses or names cannot grow memory. Each limit is logged once when first hit.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from dataclasses import dataclass

log = logging.getLogger("streamd")


@dataclass
class _Record:
    failures: int = 0
    blocked_until: float = 0.0


class LoginLimits:
    def __init__(
        self, free_failures: int = 5, backoff: float = 1.0, max_backoff: float = 300.0, max_keys: int = 10000
    ) -> None:
        self.free_failures = free_failures
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_keys = max_keys
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._logged: set[str] = set()
        self.counters: dict[str, int] = {
            "auth_failures": 0,  # wrong or malformed credentials
            "auth_backoffs": 0,  # requests answered 503 while backing off
            "auth_blocks": 0,  # times a client or user started backing off
        }

    def retry_after(self, client: str, user: str | None, now: float) -> float:
        """Seconds until ``client`` (or ``user``) may try again; 0 when it may now.

        A user's block holds only for addresses that failed themselves, so someone guessing a
        user's password from elsewhere cannot lock the real user out.
        """
        wait = 0.0
        suspect = f"client {client}" in self._records
        for key in (f"client {client}", *([f"user {user}"] if user and suspect else [])):
            record = self._records.get(key)
            if record is not None and record.blocked_until > now:
                wait = max(wait, record.blocked_until - now)
        if wait:
            self.counters["auth_backoffs"] += 1
        return wait

    def failed(self, client: str, user: str | None, now: float) -> None:
        self.counters["auth_failures"] += 1
        for key in (f"client {client}", *([f"user {user}"] if user else [])):
            record = self._records.pop(key, None) or _Record()
            self._records[key] = record  # most recent last
            record.failures += 1
            beyond = record.failures - self.free_failures
            if beyond >= 0:
                delay = min(self.max_backoff, self.backoff * 2 ** min(beyond, 30))
                record.blocked_until = now + delay
                self.counters["auth_blocks"] += 1
                if key not in self._logged:
                    self._logged.add(key)
                    log.warning("%s: %d failed logins; backing off %.0f s", key, record.failures, delay)
        while len(self._records) > self.max_keys:
            self._records.popitem(last=False)

    def succeeded(self, client: str, user: str) -> None:
        for key in (f"client {client}", f"user {user}"):
            self._records.pop(key, None)
            self._logged.discard(key)


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
