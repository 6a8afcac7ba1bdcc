"""A cluster of streamd machines on Redis (issue 18): who is alive, and who owns each live path.

- :mod:`.store`: the seam, a ``ClusterStore`` Protocol (node registrations, path claims) and its
  plain data; :mod:`.redis_store` implements it on Redis (``SET NX PX`` and Lua check-and-set),
  :mod:`.memory_store` in memory with a clock the tests move.
- :mod:`.node`: this node's side (the asyncio shell): the heartbeat that registers it and renews
  its claims, refusing what it cannot verify while Redis is away, rejoining when it returns.
- :mod:`.edge`: what a node does for a path it does not own: pull it from the owner (an edge
  relay) or answer 302 to it; balancing new sessions to the least-loaded node.

Every expiry runs on Redis's clock (key TTLs), never by comparing the nodes' clocks.
"""
