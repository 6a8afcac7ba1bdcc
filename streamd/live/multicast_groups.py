"""Which multicast group and ports each live path sends to: the configured range, and allocation.

No sockets. A path gets one group and one even port per track (RTCP on the odd port after it).
The first choice is a hash of the path name, so a path keeps its group and ports across server
restarts (saved SDP files and player bookmarks stay valid) unless another path took them first.
Port pairs are unique over the whole range, not just per group: on Linux a socket bound to a port
receives every group joined on the host for that port (``IP_MULTICAST_ALL``), so two paths on the
same port would leak into each other's players.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

DEFAULT_RANGE = "239.255.42.0/24"  # organisation-local scope (RFC 2365); never the whole 224/4
DEFAULT_PORTS = (40000, 40999)
DEFAULT_TTL = 16


class PoolExhausted(Exception):
    """No group or no run of free port pairs is left in the configured range."""


@dataclass(frozen=True)
class MulticastRange:
    """The configured groups, ports and TTL, validated."""

    network: ipaddress.IPv4Network
    first_port: int  # even
    last_port: int  # the last usable RTP port is even and last_port >= it + 1
    ttl: int

    @classmethod
    def parse(cls, network: str, ports: tuple[int, int] | list[int], ttl: int) -> MulticastRange:
        """Raise ValueError with a message a user can act on."""
        try:
            net = ipaddress.IPv4Network(network.strip(), strict=False)
        except ValueError as exc:
            raise ValueError(f"multicast_range {network!r} is not an IPv4 network ({exc})") from None
        if not net.is_multicast:
            raise ValueError(f"multicast_range {network!r} is not inside 224.0.0.0/4")
        if net.overlaps(ipaddress.IPv4Network("224.0.0.0/24")):
            raise ValueError("multicast_range must not include 224.0.0.0/24 (link-local control groups)")
        if (
            not isinstance(ports, tuple | list)
            or len(ports) != 2
            or not all(isinstance(p, int) and not isinstance(p, bool) for p in ports)
        ):
            raise ValueError("multicast_ports must be two port numbers [first, last]")
        low, high = ports
        if not 1024 <= low < high <= 65535:
            raise ValueError(f"multicast_ports {low}-{high}: need 1024 <= first < last <= 65535")
        first = low + (low % 2)
        if first + 1 > high:
            raise ValueError(f"multicast_ports {low}-{high} holds no even/odd pair")
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= 255:
            raise ValueError(f"multicast_ttl must be 1-255, not {ttl!r}")
        return cls(net, first, high, ttl)

    @property
    def groups(self) -> int:
        return self.network.num_addresses

    @property
    def pairs(self) -> int:
        return (self.last_port - self.first_port + 1) // 2

    def group(self, offset: int) -> str:
        return str(self.network.network_address + offset)

    def contains(self, address: str) -> bool:
        try:
            return ipaddress.IPv4Address(address) in self.network
        except ValueError:
            return False


@dataclass(frozen=True)
class Allocation:
    """One path's group and the RTP port of each of its tracks (by track index)."""

    path: str
    group: str
    ports: dict[int, int]

    def port(self, index: int) -> int:
        return self.ports[index]


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest())


class GroupPool:
    """Hands out groups and port pairs from a :class:`MulticastRange`; bounded by the range itself."""

    def __init__(self, spec: MulticastRange) -> None:
        self.spec = spec
        self._by_path: dict[str, Allocation] = {}
        self._groups: set[int] = set()  # offsets into the network in use
        self._pairs: set[int] = set()  # pair numbers in use (port = first_port + 2 * n)

    def get(self, path: str) -> Allocation | None:
        return self._by_path.get(path)

    def allocate(self, path: str, tracks: list[int]) -> Allocation:
        """The path's allocation, made now if it has none (or grown when it has new track indexes)."""
        existing = self._by_path.get(path)
        if existing is not None and set(tracks) <= set(existing.ports):
            return existing
        if existing is not None:
            self.release(path)
        spec = self.spec
        group = self._first_free(self._groups, spec.groups, _hash(path), 1)
        if group is None:
            raise PoolExhausted(f"all {spec.groups} groups of {spec.network} are in use")
        ordered = sorted(set(tracks))
        start = self._first_free(self._pairs, spec.pairs, _hash("ports:" + path), max(len(ordered), 1))
        if start is None:
            raise PoolExhausted(
                f"no {len(ordered)} free port pair(s) left in {spec.first_port}-{spec.last_port}"
            )
        pairs = list(range(start, start + len(ordered)))
        self._groups.add(group)
        self._pairs.update(pairs)
        allocation = Allocation(
            path, spec.group(group), {i: spec.first_port + 2 * p for i, p in zip(ordered, pairs, strict=True)}
        )
        self._by_path[path] = allocation
        return allocation

    def release(self, path: str) -> None:
        allocation = self._by_path.pop(path, None)
        if allocation is None:
            return
        self._groups.discard(_offset(self.spec, allocation.group))
        for port in allocation.ports.values():
            self._pairs.discard((port - self.spec.first_port) // 2)

    def __len__(self) -> int:
        return len(self._by_path)

    @staticmethod
    def _first_free(used: set[int], size: int, seed: int, run: int) -> int | None:
        """The first start (from ``seed`` mod size, wrapping) of ``run`` consecutive free slots."""
        if run > size or len(used) + run > size:
            return None
        first = seed % (size - run + 1)
        for step in range(size - run + 1):
            start = (first + step) % (size - run + 1)
            if all(start + k not in used for k in range(run)):
                return start
        return None


def _offset(spec: MulticastRange, group: str) -> int:
    return int(ipaddress.IPv4Address(group)) - int(spec.network.network_address)
