"""Files made once per test run and shared by every pytest-xdist worker.

A session-scoped fixture runs once per worker; without this, six workers would generate the same
media six times (and the serial pass once more). The first worker to ask makes the directory
under a file lock, in a scratch directory renamed into place when complete, so the others wait
and then reuse it; a worker that dies half-way leaves only the scratch directory, which the next
one replaces.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def run_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The temporary directory of this run that all workers share (the parent of theirs), or
    ``STREAMD_TEST_SHARED`` (scripts/test's, shared by its parallel and its serial pytest run)."""
    if os.environ.get("STREAMD_TEST_SHARED"):
        return Path(os.environ["STREAMD_TEST_SHARED"])
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def made_once(tmp_path_factory: pytest.TempPathFactory, key: str, make: Callable[[Path], object]) -> Path:
    """``make(directory)`` run by the first worker to ask for ``key``; every worker gets the result.

    ``key`` names what is made and must change with the generator's parameters.
    """
    return made_once_in(run_root(tmp_path_factory), key, make)


def made_once_in(root: Path, key: str, make: Callable[[Path], object]) -> Path:
    """``made_once`` under ``root``."""
    target = root / f"shared-{key}"
    with open(root / f"shared-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when closed, or when a dying worker exits
        if not target.is_dir():
            scratch = root / f"shared-{key}.partial"
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir()
            make(scratch)
            scratch.rename(target)
    return target


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path``'s ``.lock`` sibling, for read-modify-write by several workers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
