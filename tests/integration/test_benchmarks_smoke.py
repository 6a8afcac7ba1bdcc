"""The jitter/loss benchmark runs end to end on one short profile (benchmarks are not tests;
this proves the tool works: relay, receivers, RTCP reports, the server's API view, the report)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.impair.kernel import available_qdiscs

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration, pytest.mark.serial]  # measures jitter and loss

# two-second windows: a server sending its sender reports every second (the first after half a
# second, where 2.5 s left the kernel run's clean profile without a round-trip time) gives each
# receiver reports to answer within them
SHORT = ["--seconds", "2", "--no-peer"]


def _short_rtcp(folder: Path) -> str:
    config = folder / "streamd.toml"
    config.write_text("rtcp_min_interval = 1.0\n")
    return f"--server-arg=--config={config}"


def test_jitter_loss_benchmark_agrees_with_the_server(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "benchmarks.jitter_loss", "--profiles", "burst-5pct", *SHORT,
            "--receivers", "1", _short_rtcp(tmp_path), "--out", str(tmp_path)]  # fmt: skip
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((tmp_path / "jitter_loss.json").read_text())
    (row,) = report["results"]["streamd"]
    assert row["agree"], row["streams"]
    assert row["relay_loss_percent"] > 0  # the relay did drop packets ...
    assert row["server_cumulative_lost"] == row["receiver_cumulative_lost"] > 0  # ... and all agree
    assert all(s["server"]["reports"] >= 2 for s in row["streams"])
    assert (tmp_path / "jitter_loss.md").read_text().startswith("# Jitter and loss")
    if importlib.util.find_spec("matplotlib"):  # the bench extra, which scripts/test installs
        assert {p.name for p in tmp_path.glob("*.png")} >= {"jitter_over_time.png", "measured_vs_rtcp.png"}


def test_kernel_qdiscs_in_a_namespace_agree_with_the_receivers(tmp_path: Path) -> None:
    """``--impairment kernel``: the servers run in a network namespace behind a veth pair whose
    qdiscs do the impairing (netem where the kernel has it, else tbf for the bottleneck), and the packets the
    qdisc dropped are the packets the receivers found missing."""
    if not available_qdiscs():
        pytest.skip("no network namespaces or qdiscs here (needs root and iproute2)")
    # no plots: the relay test above draws them
    args = [sys.executable, "-m", "benchmarks.jitter_loss", "--impairment", "kernel",
            "--profiles", "clean", "bottleneck-2mbit", *SHORT, "--receivers", "6", _short_rtcp(tmp_path),
            "--no-plots", "--out", str(tmp_path)]  # fmt: skip
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((tmp_path / "jitter_loss.json").read_text())
    clean, bottleneck = report["results"]["streamd"]
    assert clean["kernel"]["qdisc"] == "" and clean["kernel"]["dropped"] == 0 and clean["agree"]
    kernel = bottleneck["kernel"]
    assert bottleneck["impairment"].startswith("kernel: tc qdisc ") and bottleneck["agree"], bottleneck
    assert kernel["dropped"] > 0, "six ~1 Mbit/s receivers overflow a 2 Mbit/s bottleneck"
    assert bottleneck["server_cumulative_lost"] == bottleneck["receiver_cumulative_lost"] > 0
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    assert report["namespace"].startswith("sdbench") and report["namespace"] not in namespaces, "removed"
