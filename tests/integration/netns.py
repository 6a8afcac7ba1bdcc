"""A throwaway network namespace for tests that send multicast, so the host's network never sees it.

The namespace has only ``lo``, with multicast on and a 224.0.0.0/4 route through it. The test
thread enters it with setns(2) (so its own sockets, and every subprocess it starts, live there)
and leaves it again afterwards. Needs root and iproute2; :func:`unavailable` says why not.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=check)


def unavailable() -> str | None:
    """Why a namespace cannot be made here (None: it can)."""
    if os.geteuid() != 0:
        return "multicast tests need root to create a network namespace"
    if shutil.which("ip") is None:
        return "multicast tests need iproute2 (`ip netns`)"
    return None


class NetNamespace:
    def __init__(self, name: str) -> None:
        self.name = name

    def create(self) -> None:
        """Make the namespace; RuntimeError (with ip's message) if the kernel or policy refuses."""
        steps = (
            ("netns", "add", self.name),
            ("netns", "exec", self.name, "ip", "link", "set", "lo", "up"),
            ("netns", "exec", self.name, "ip", "link", "set", "lo", "multicast", "on"),
            ("netns", "exec", self.name, "ip", "route", "add", "224.0.0.0/4", "dev", "lo"),
        )
        for step in steps:
            result = _ip(*step, check=False)
            if result.returncode != 0:
                self.delete()
                raise RuntimeError(f"ip {' '.join(step)}: {result.stderr.strip()}")

    def delete(self) -> None:
        _ip("netns", "del", self.name, check=False)

    @property
    def prefix(self) -> list[str]:
        """Run a command inside: ``[*ns.prefix, "ffmpeg", ...]``."""
        return ["ip", "netns", "exec", self.name]

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Move the calling thread into the namespace for the block, then back."""
        libc = ctypes.CDLL(None, use_errno=True)
        original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            if libc.setns(target, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {self.name}")
            try:
                yield
            finally:
                if libc.setns(original, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns back to the original namespace")
        finally:
            os.close(target)
            os.close(original)
