"""Shared by the benchmarks: where results go, the machine description, the kernel-qdisc note, progress."""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from benchmarks.impair.kernel import available_qdiscs

RESULTS = Path(__file__).parent / "results"
T = TypeVar("T")


def results_dir() -> Path:
    """``benchmarks/results/<date>/``: one folder per day, each benchmark's files inside."""
    path = RESULTS / time.strftime("%Y-%m-%d")
    path.mkdir(parents=True, exist_ok=True)
    return path


def machine() -> dict[str, str | int]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) // 1024
    return {
        "cpu": cpu,
        "cores": os.cpu_count() or 0,
        "memory_mib": mem,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "load_average_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def machine_line(m: dict[str, str | int]) -> str:
    return (
        f"{m['cpu']}, {m['cores']} cores, {m['memory_mib']} MiB, Python {m['python']}, {m['system']}; "
        f"load average at start {m['load_average_at_start']} (the machine is shared)"
    )


def relay_status() -> str:
    """What the relay mode says about the kernel alternative (probed in a scratch namespace)."""
    qdiscs = available_qdiscs()
    if "netem" in qdiscs:
        return "user-space relay (per-flow ground truth); this kernel has netem: --impairment kernel uses it"
    have = "only tbf" if "tbf" in qdiscs else "neither netem nor tbf (or no network namespaces)"
    return (
        f"user-space relay; this kernel has {have}, so --impairment kernel can shape "
        f"{'a pure bottleneck only' if 'tbf' in qdiscs else 'nothing'}"
    )


def progress(items: Iterable[T], total: int, desc: str) -> Iterator[T]:
    """tqdm when installed (the ``bench`` extra), else one plain line per step on stderr."""
    try:
        from tqdm import tqdm
    except ImportError:
        for i, item in enumerate(items):
            print(f"{desc}: {i + 1}/{total}", file=sys.stderr, flush=True)
            yield item
        return
    yield from tqdm(items, total=total, desc=desc, file=sys.stderr)


def ratio(a: float | None, b: float | None) -> str:
    """``a / b`` for the side-by-side tables ("–" when either is missing)."""
    return "–" if a is None or not b else f"{a / b:.2f}"


def pyplot() -> Any | None:
    """matplotlib's pyplot drawing to files, or None (said on stderr) without the ``bench`` extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install '.[bench]'): no plots", file=sys.stderr)
        return None
    return plt
