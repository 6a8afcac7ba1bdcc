"""Render tests/artifacts/codec-matrix.json (written by the codec tests) into the README table.

python scripts/codec_table.py          # rewrites the table between the README markers
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MATRIX = ROOT / "tests" / "artifacts" / "codec-matrix.json"
README = ROOT / "README.md"
BEGIN, END = "<!-- codec-table:begin -->", "<!-- codec-table:end -->"
CLIENTS = ("ffmpeg", "gstreamer", "pyav")
TRANSPORTS = ("udp", "tcp")
MARKS = {"bit-exact": "✅ bit-exact", "decoded": "✅ decoded", "fail": "❌"}


def render(matrix: dict[str, dict[str, str]]) -> str:
    header = "| codec | " + " | ".join(f"{c} {t.upper()}" for c in CLIENTS for t in TRANSPORTS) + " |"
    lines = [header, "|---|" + "---|" * (len(CLIENTS) * len(TRANSPORTS))]
    for codec in sorted(matrix):
        cells = []
        for c in CLIENTS:
            for t in TRANSPORTS:
                outcome = matrix[codec].get(f"{c}/{t}", "not tested")
                cells.append(MARKS.get(outcome, outcome))
        lines.append(f"| {codec} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    matrix = json.loads(MATRIX.read_text())
    text = README.read_text()
    if BEGIN not in text or END not in text:
        print(f"README lacks the {BEGIN} / {END} markers", file=sys.stderr)
        return 1
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{BEGIN}\n{render(matrix)}\n{END}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
