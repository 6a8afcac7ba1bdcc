"""Commands a WHEP viewer of a file sends over its data channel, sans-I/O.

One JSON object per message: ``{"type": "seek", "position": 12.5}`` (seconds of normal play
time), ``{"type": "pause"}``, ``{"type": "play"}``, ``{"type": "rate", "rate": 2}`` (0.25 to 8;
audio pauses while the rate is not 1, as over RTSP). The server answers each with the state and
reports it twice a second: ``{"type": "position", "position": s, "duration": s | null,
"paused": bool, "rate": r}``; a command it cannot take gets ``{"type": "error", "reason": ...}``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from fractions import Fraction

MAX_MESSAGE = 1024
MIN_RATE, MAX_RATE = 0.25, 8.0


@dataclass(frozen=True)
class Command:
    kind: str  # seek | pause | play | rate
    position: Fraction | None = None
    rate: Fraction | None = None


def parse_command(message: str | bytes, duration: Fraction | None) -> Command:
    """The command in one data channel message; ValueError with the reason when it is not one."""
    if len(message) > MAX_MESSAGE:
        raise ValueError(f"a command is at most {MAX_MESSAGE} bytes")
    try:
        data = json.loads(message)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("a command is a JSON object") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ValueError('a command is a JSON object with a "type"')
    kind = data["type"]
    if kind in ("pause", "play"):
        return Command(kind)
    if kind == "seek":
        position = _number(data.get("position"), "position")
        if position < 0 or (duration is not None and position > duration):
            raise ValueError(f"position must be between 0 and {float(duration or 0):g} seconds")
        return Command(kind, position=position)
    if kind == "rate":
        rate = _number(data.get("rate"), "rate")
        if not MIN_RATE <= rate <= MAX_RATE:
            raise ValueError(f"rate must be between {MIN_RATE:g} and {MAX_RATE:g}")
        return Command(kind, rate=rate)
    raise ValueError(f"unknown command type {kind[:20]!r} (seek, pause, play, rate)")


def state_message(position: Fraction, duration: Fraction | None, paused: bool, rate: Fraction) -> str:
    return json.dumps(
        {
            "type": "position",
            "position": round(float(position), 3),
            "duration": None if duration is None else round(float(duration), 3),
            "paused": paused,
            "rate": float(rate),
        }
    )


def error_message(reason: str) -> str:
    return json.dumps({"type": "error", "reason": reason})


def _number(value: object, name: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number")
    return Fraction(value).limit_denominator(1000)
