"""Kernel impairment: ``tc`` queueing disciplines on a veth pair into a network namespace.

The server runs inside the namespace and the receivers outside, so the qdiscs shape only the
benchmark's own traffic (netem on loopback would slow every process on the machine). The
server -> receivers direction gets the profile, the way back its ``reverse_of`` (for the RTT).

netem (``sch_netem``) expresses every UDP profile. Without it, ``tbf`` still expresses a pure
bottleneck; :func:`qdisc_args` says which, or None when the kernel here cannot (the caller
reports the profile as skipped). Unlike the user-space relay, the kernel counts drops per
device, not per flow: the ground truth is the qdisc's ``dropped`` counter over all streams.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from dataclasses import dataclass

from benchmarks.impair.model import Profile

NETEM_LIMIT = 10_000  # packets netem may hold (its default of 1000 is short for 30 ms at 400 streams)
MIN_TBF_BURST = 3_200  # bytes: at least two full-size packets per token refill


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=10)


@functools.cache
def available_qdiscs() -> frozenset[str]:
    """Which of netem and tbf this kernel has (probed on a scratch namespace's loopback)."""
    name = f"sdprobe{os.getpid() % 100_000}"
    if _run("ip", "netns", "add", name).returncode:
        return frozenset()
    try:
        found = set()
        for kind, args in (
            ("netem", ["delay", "0ms"]),
            ("tbf", ["rate", "1mbit", "burst", "4k", "limit", "8k"]),
        ):
            if not _run(
                "ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", "lo", "root", kind, *args
            ).returncode:
                found.add(kind)
                _run("ip", "netns", "exec", name, "tc", "qdisc", "del", "dev", "lo", "root")
        return frozenset(found)
    finally:
        _run("ip", "netns", "del", name)


def _pct(value: float) -> str:
    return f"{100 * value:.4g}%"


def qdisc_args(profile: Profile, qdiscs: frozenset[str]) -> list[str] | None:
    """The ``tc qdisc add ... root`` arguments after ``root`` for ``profile``: [] when it needs no
    qdisc at all, None when this kernel's qdiscs cannot express it."""
    if profile.transport != "udp" or profile.keep_order:
        return None  # a byte stream needs in-order delay: the TCP relay's job
    if profile == Profile(profile.name, transport=profile.transport):
        return []  # unimpaired
    if "netem" in qdiscs:
        args = ["netem", "limit", str(NETEM_LIMIT)]
        if profile.delay_ms or profile.jitter_ms or profile.reorder:
            args += ["delay", f"{profile.delay_ms:g}ms"]
            if profile.jitter_ms:
                args += [f"{profile.jitter_ms:g}ms", "distribution", profile.distribution]
        if profile.loss:
            args += ["loss", "random", _pct(profile.loss)]
        elif profile.burst is not None:
            burst = profile.burst
            args += [
                "loss",
                "gemodel",
                _pct(burst.p),
                _pct(burst.r),
                _pct(burst.loss_bad),
                _pct(burst.loss_good),
            ]
        if profile.duplicate:
            args += ["duplicate", _pct(profile.duplicate)]
        if profile.reorder:
            args += ["reorder", _pct(profile.reorder)]
        if profile.rate_bps:
            args += ["rate", f"{int(profile.rate_bps)}bit"]
        return args
    pure_rate = profile.rate_bps and not (
        profile.delay_ms
        or profile.jitter_ms
        or profile.loss
        or profile.burst
        or profile.duplicate
        or profile.reorder
    )
    if pure_rate and "tbf" in qdiscs:
        burst = max(MIN_TBF_BURST, int(profile.rate_bps / 8 / 100))  # 10 ms of tokens
        return [
            "tbf",
            "rate",
            f"{int(profile.rate_bps)}bit",
            "burst",
            str(burst),
            "limit",
            str(profile.queue_bytes),
        ]
    return None


@dataclass
class KernelLink:
    """A namespace for the server, joined to this one by a veth pair; ``close`` removes it all."""

    name: str
    host_device: str
    inner_device: str
    client_host: str  # this side's address, where receivers bind
    server_host: str  # the namespace's address, where the server listens

    @classmethod
    def create(cls) -> KernelLink:
        tag = os.getpid() % 100_000
        subnet = tag % 250
        link = cls(f"sdbench{tag}", f"sdb{tag}h", f"sdb{tag}n", f"10.213.{subnet}.1", f"10.213.{subnet}.2")
        link.close()  # what a killed run with the same pid may have left
        steps = [
            ["ip", "netns", "add", link.name],
            ["ip", "link", "add", link.host_device, "type", "veth", "peer", "name", link.inner_device],
            ["ip", "link", "set", link.inner_device, "netns", link.name],
            ["ip", "addr", "add", f"{link.client_host}/30", "dev", link.host_device],
            ["ip", "link", "set", link.host_device, "up"],
            [*link.prefix, "ip", "addr", "add", f"{link.server_host}/30", "dev", link.inner_device],
            [*link.prefix, "ip", "link", "set", link.inner_device, "up"],
            [*link.prefix, "ip", "link", "set", "lo", "up"],
        ]
        for step in steps:
            done = _run(*step)
            if done.returncode:
                link.close()
                raise RuntimeError(f"{' '.join(step)}: {done.stderr.strip()}")
        return link

    @property
    def prefix(self) -> list[str]:
        """Put before a command to run it inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def shape(self, forward: list[str], backward: list[str] | None) -> None:
        """Replace the qdiscs: ``forward`` on the server's egress, ``backward`` on the receivers'."""
        for prefix, device, args in (
            (self.prefix, self.inner_device, forward),
            ([], self.host_device, backward),
        ):
            _run(*prefix, "tc", "qdisc", "del", "dev", device, "root")
            if args:
                done = _run(*prefix, "tc", "qdisc", "add", "dev", device, "root", *args)
                if done.returncode:
                    raise RuntimeError(
                        f"tc qdisc add dev {device} root {' '.join(args)}: {done.stderr.strip()}"
                    )

    def forward_drops(self) -> int:
        """Packets the server-side qdisc has dropped since it was set up."""
        shown = _run(*self.prefix, "tc", "-s", "qdisc", "show", "dev", self.inner_device).stdout
        match = re.search(r"dropped (\d+)", shown)
        return int(match.group(1)) if match else 0

    def close(self) -> None:
        _run("ip", "link", "del", self.host_device)  # takes its peer with it
        _run("ip", "netns", "del", self.name)
