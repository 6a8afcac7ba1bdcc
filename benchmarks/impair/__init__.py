"""User-space network impairment: a seeded model (``model``) and asyncio relays (``relay``).

Kernel netem needs root and the ``sch_netem`` module; this works anywhere, on loopback, and a
seed makes a run repeat exactly (same packets lost, same delays).
"""

from benchmarks.impair.model import GilbertElliott, Impairment, ImpairmentCounters, Profile

__all__ = ["GilbertElliott", "Impairment", "ImpairmentCounters", "Profile"]
