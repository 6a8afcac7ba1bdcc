"""Records which codec played in which client over which transport, for the README table.

Codec tests call ``record(codec, client, transport, ok)``; at the end of the run the results are
merged into ``tests/artifacts/codec-matrix.json`` and ``scripts/codec_table.py`` renders the table.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.shared_files import locked

MATRIX = Path(__file__).resolve().parents[1] / "artifacts" / "codec-matrix.json"
CLIENTS = ("ffmpeg", "gstreamer", "pyav")
TRANSPORTS = ("udp", "tcp")

_results: dict[str, dict[str, str]] = {}


def record(codec: str, client: str, transport: str, outcome: str) -> None:
    """``outcome``: "bit-exact", "decoded", "fail", or "n/a: <why the client cannot>"."""
    assert client in CLIENTS and transport in TRANSPORTS, (client, transport)
    _results.setdefault(codec, {})[f"{client}/{transport}"] = outcome


def flush() -> None:
    if not _results:
        return
    with locked(MATRIX):  # each pytest-xdist worker merges its own results
        merged: dict[str, dict[str, str]] = json.loads(MATRIX.read_text()) if MATRIX.exists() else {}
        for codec, cells in _results.items():
            merged.setdefault(codec, {}).update(cells)
        MATRIX.write_text(json.dumps(merged, indent=2, sort_keys=True))
