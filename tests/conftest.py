"""Hypothesis profiles for the whole suite.

``ci`` (the default): derandomized, so a run is a pure function of the code and a red CI always
means a change in the code, never an unlucky draw. ``fuzz`` (``HYPOTHESIS_PROFILE=fuzz``, what
``scripts/fuzz`` runs): random seeds and many more examples, to find new failures; each one
found is pinned in its test with ``@example`` so the ``ci`` profile replays it from then on.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=100,
    deadline=None,
    print_blob=True,
    database=None,
)
settings.register_profile(
    "fuzz",
    derandomize=False,
    max_examples=2000,
    deadline=None,
    print_blob=True,
    database=DirectoryBasedExampleDatabase(".hypothesis/examples"),  # replays what it found
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or "ci")


# --- parallel runs (pytest-xdist, what scripts/test does) ------------------------------------------
#
# scripts/test runs the tests on several workers, a test module at a time (``--dist loadfile``: a
# module's server and media fixtures are made once). A test whose assertions load can break
# (rates, lateness, elapsed time) is marked ``@pytest.mark.serial``: a parallel run leaves it out
# and scripts/test runs it afterwards, alone (``-m serial``).


def _parallel(config: pytest.Config) -> bool:
    return bool(os.environ.get("PYTEST_XDIST_WORKER")) or config.getoption("dist", "no") != "no"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _parallel(config):
        return
    serial = [item for item in items if item.get_closest_marker("serial")]
    if serial:
        config.hook.pytest_deselected(items=serial)
        items[:] = [item for item in items if not item.get_closest_marker("serial")]
    # modules are handed out in this order (scripts/test: --no-loadscope-reorder): the slowest
    # integration modules first, so that none of them starts when the others are nearly done, then
    # the other integration modules, then the many short unit modules, which fill the idle ends
    items.sort(key=_handed_out)


# The integration modules that keep a worker longest (seconds in a parallel run, from --durations),
# slowest first. Only the order in which workers get them depends on this list, never what runs.
SLOWEST_MODULES = (
    "test_hls_live.py",
    "test_whep.py",
    "test_live.py",
    "test_hls_vod.py",
    "test_recording.py",
    "test_relay.py",
    "test_cluster.py",
    "test_attacks_at_scale.py",
    "test_tunnel_auth.py",
    "test_workers.py",
    "test_http_app.py",
    "test_auth_external.py",
    "test_drain.py",
    "test_fuzz_server.py",
)


def _handed_out(item: pytest.Item) -> tuple[int, int]:
    if not item.nodeid.startswith("tests/integration/"):  # unit and fuzz tests: short, CPU-bound
        return (2, 0)
    name = item.nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
    return (0, SLOWEST_MODULES.index(name)) if name in SLOWEST_MODULES else (1, 0)
