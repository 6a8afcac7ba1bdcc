"""The whole server's multicast groups as one worker's HTTP side shows them.

Only the worker that sends a group lists it (a mirror's send is another worker's), so
``/api/v1/multicast``, the index page's "multicast sdp" link and ``/sdp/<path>?multicast=1``
answer from every worker's groups: this worker's own, plus what the siblings told in their state
(:func:`multicast_state`, gathered with the rest of it by :mod:`.view`).
"""

from __future__ import annotations

from typing import Any

from streamd.live.multicast import MulticastService, group_sdp
from streamd.rtp.presentation import Presentation
from streamd.workers.multicast_link import key_of
from streamd.workers.multicast_table import allocation_of


def multicast_state(service: MulticastService) -> dict[str, Any]:
    return {"groups": service.snapshot(), "announced": service.announcements()}


class WholeMulticast:
    """Delegates to the worker's MulticastService; what shows the groups covers every worker."""

    def __init__(self, local: MulticastService, whole: Any) -> None:
        self._local = local
        self._whole = whole  # its _siblings: the siblings' states, refreshed per request

    def __getattr__(self, name: str) -> Any:
        return getattr(self._local, name)

    def _theirs(self, key: str) -> list[Any]:
        return [s.get("multicast", {}).get(key) or {} for s in self._whole._siblings]

    def snapshot(self) -> list[dict[str, object]]:
        groups = [*self._local.snapshot(), *(g for groups in self._theirs("groups") for g in groups)]
        return sorted(groups, key=lambda g: str(g.get("path", "")))

    def advertised(self, path: str) -> bool:
        if self._local.advertised(path):
            return True
        return any(bool(a.get(path, {}).get("always")) for a in self._theirs("announced"))

    def sdp(
        self, path: str, presentation: Presentation, unicast_sdp: str, *, secure: bool = False
    ) -> str | None:
        mine = self._local.sdp(path, presentation, unicast_sdp, secure=secure)
        if mine is not None:
            return mine
        for announced in self._theirs("announced"):
            found = announced.get(path)
            if found is not None:
                allocation = allocation_of(path, found)
                key = key_of(found.get("key"))
                return group_sdp(allocation, int(found["ttl"]), key, presentation, unicast_sdp, secure=secure)
        return None
