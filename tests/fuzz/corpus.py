"""The inputs on disk: ``corpus/<target>/`` seeds, ``regressions/<target>/`` crash inputs that must
keep passing, ``known/<target>/`` crash inputs of bugs not fixed yet (run as expected failures)."""

from __future__ import annotations

import hashlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
REGRESSIONS = HERE / "regressions"
KNOWN = HERE / "known"


def inputs(kind: Path, target: str) -> list[Path]:
    folder = kind / target
    return (
        sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        if folder.is_dir()
        else []
    )


def save(kind: Path, target: str, data: bytes) -> Path:
    """Store ``data`` under a name derived from its content (saving twice keeps one file)."""
    folder = kind / target
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / hashlib.sha1(data).hexdigest()[:16]
    path.write_bytes(data)
    return path
