"""The ``webrtc_udp_ports`` setting: a range of UDP ports for ICE host candidates, and the picker
that says which ports of it to try next (sans-I/O: the binding is in ``ice_ports``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class PortRange:
    low: int
    high: int

    def __len__(self) -> int:
        return self.high - self.low + 1

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.low <= port <= self.high


def parse_port_range(value: object) -> PortRange | None:
    """``"40000-40999"``, ``"40000"`` or ``[40000, 40999]``; None (unset) is no range: ephemeral
    ports. ValueError with the reason for anything else."""
    if value is None:
        return None
    if isinstance(value, str):
        parts = value.strip().split("-")
        if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f'webrtc_udp_ports must look like "40000-40999", not {value!r}')
        bounds = [int(p) for p in parts]
    elif isinstance(value, list | tuple):
        bounds = list(value)
        if len(bounds) != 2 or not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds):
            raise ValueError(f"webrtc_udp_ports must be [low, high] port numbers, not {value!r}")
    else:
        raise ValueError(f'webrtc_udp_ports must be a string "low-high" or [low, high], not {value!r}')
    low, high = bounds[0], bounds[-1]
    if not 1 <= low <= high <= 65535:
        raise ValueError(f"webrtc_udp_ports must be ports 1-65535 with low <= high, not {low}-{high}")
    return PortRange(low, high)


class PortPicker:
    """Which ports of the range to try for the next bind: each port once, starting after the last
    one taken, so sessions spread over the range instead of all retrying its first ports."""

    def __init__(self, ports: PortRange) -> None:
        self.ports = ports
        self._next = ports.low

    def order(self) -> Iterator[int]:
        start = self._next - self.ports.low
        size = len(self.ports)
        for i in range(size):
            yield self.ports.low + (start + i) % size

    def taken(self, port: int) -> None:
        self._next = port + 1 if port < self.ports.high else self.ports.low
