"""The cluster store on Redis (or Valkey), with the maintained ``redis`` package's asyncio API.

Keys (``<prefix>`` is ``streamd:``): ``node:<id>`` a node's registration (JSON), ``path:<path>``
a claim (``"<token> <node id>"``), ``fence`` the fencing-token counter, ``cluster`` set by every
registration and never expiring (without it, a Redis restarted empty takes no new claim until a
node has registered again), ``new-claims-held`` the hold after such a restart. Every time to live is a
key expiry (``PX``), so Redis's clock alone decides what has expired. Claims are made, renewed
and released by Lua scripts, which Redis runs atomically: of two nodes claiming a path at the
same moment exactly one sets it, and only the holder of a token can extend or delete it. The
scripts touch keys they compute (a node's key from a claim), which standalone Redis allows.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from streamd.cluster.store import Claim, NodeInfo, StoreRecovering, StoreUnavailable

PREFIX = "streamd:"

CLAIM = """
local held = redis.call('GET', KEYS[1])
if held then return held end
if ARGV[3] == '1' and (redis.call('EXISTS', KEYS[3]) == 1 or redis.call('EXISTS', KEYS[4]) == 0) then
  return false
end
local token = redis.call('INCR', KEYS[2])
local value = token .. ' ' .. ARGV[1]
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return value
"""
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
OWNER = """
local held = redis.call('GET', KEYS[1])
if not held then return false end
local node = string.match(held, '^%d+ (.+)$')
if node and redis.call('EXISTS', ARGV[1] .. node) == 1 then return held end
return false
"""


class RedisStore:
    """:class:`~streamd.cluster.store.ClusterStore` on one Redis database (``redis://host:port/db``)."""

    def __init__(self, url: str, *, timeout: float = 1.0, prefix: str = PREFIX) -> None:
        # fail fast: a node asks Redis while a client waits, and a heartbeat must notice an outage
        self._redis: Any = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
        self._prefix = prefix
        self._held_key = f"{prefix}new-claims-held"
        self._cluster_key = f"{prefix}cluster"
        self._claim = self._redis.register_script(CLAIM)
        self._renew = self._redis.register_script(RENEW)
        self._release = self._redis.register_script(RELEASE)
        self._owner = self._redis.register_script(OWNER)

    def _node_key(self, node_id: str) -> str:
        return f"{self._prefix}node:{node_id}"

    def _path_key(self, path: str) -> str:
        return f"{self._prefix}path:{path}"

    async def register(self, node: NodeInfo, ttl: float) -> bool:
        async def both() -> Any:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(self._node_key(node.id), node.encode(), px=_ms(ttl), get=True)
                pipe.set(self._cluster_key, "1")
                return (await pipe.execute())[0]

        return await self._call(both()) is not None

    async def hold_new_claims(self, ttl: float) -> None:
        await self._call(self._redis.set(self._held_key, "1", px=_ms(ttl)))

    async def unregister(self, node_id: str) -> None:
        await self._call(self._redis.delete(self._node_key(node_id)))

    async def nodes(self) -> list[NodeInfo]:
        async def scan() -> list[NodeInfo]:
            keys = [key async for key in self._redis.scan_iter(match=f"{self._prefix}node:*", count=500)]
            values = await self._redis.mget(keys) if keys else []
            found = (NodeInfo.decode(value) for value in values if value is not None)
            return sorted((node for node in found if node is not None), key=lambda node: node.id)

        return await self._call(scan())

    async def claim(self, path: str, node_id: str, ttl: float, *, new: bool = True) -> tuple[Claim, bool]:
        keys = [self._path_key(path), f"{self._prefix}fence", self._held_key, self._cluster_key]
        value = await self._call(self._claim(keys=keys, args=[node_id, _ms(ttl), "1" if new else "0"]))
        if value is None:
            raise StoreRecovering("Redis is waiting for owners to claim their paths again")
        held = Claim.parse(path, value)
        if held is None:
            raise StoreUnavailable(f"unreadable claim on {path!r} in Redis")
        return held, held.node == node_id

    async def renew(self, claim: Claim, ttl: float) -> bool:
        keys = [self._path_key(claim.path)]
        return bool(await self._call(self._renew(keys=keys, args=[claim.value, _ms(ttl)])))

    async def release(self, claim: Claim) -> None:
        await self._call(self._release(keys=[self._path_key(claim.path)], args=[claim.value]))

    async def owner(self, path: str) -> Claim | None:
        value = await self._call(self._owner(keys=[self._path_key(path)], args=[f"{self._prefix}node:"]))
        return Claim.parse(path, value)

    async def close(self) -> None:
        await self._redis.aclose()

    async def _call(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"Redis: {exc or type(exc).__name__}") from exc


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
