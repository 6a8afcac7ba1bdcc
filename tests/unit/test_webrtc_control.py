"""The data channel's commands: what is read, what is refused and why."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamd.webrtc.control import Command, parse_command, state_message


def test_commands() -> None:
    assert parse_command('{"type": "pause"}', None) == Command("pause")
    assert parse_command(b'{"type": "play"}', None) == Command("play")
    assert parse_command('{"type": "seek", "position": 2.5}', Fraction(10)) == Command("seek", Fraction(5, 2))
    assert parse_command('{"type": "rate", "rate": 2}', None) == Command("rate", rate=Fraction(2))


@pytest.mark.parametrize(
    ("message", "why"),
    [
        ("nope", "JSON object"),
        ("[1]", '"type"'),
        ('{"type": "jump"}', "unknown command"),
        ('{"type": "seek"}', "position must be a number"),
        ('{"type": "seek", "position": true}', "position must be a number"),
        ('{"type": "seek", "position": 11}', "between 0 and 10"),
        ('{"type": "seek", "position": -1}', "between 0 and 10"),
        ('{"type": "rate", "rate": 100}', "between 0.25 and 8"),
        ('{"type": "seek", "position": NaN}', "number"),
        ("{" + " " * 2000 + "}", "at most 1024 bytes"),
    ],
)
def test_refusals_say_why(message: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_command(message, Fraction(10))


def test_state_is_json() -> None:
    state = json.loads(state_message(Fraction(3, 2), None, True, Fraction(1)))
    assert state == {"type": "position", "position": 1.5, "duration": None, "paused": True, "rate": 1.0}


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_any_message_is_a_command_or_a_reason(message: str | bytes) -> None:
    try:
        command = parse_command(message, Fraction(60))
    except ValueError as exc:
        assert str(exc)
    else:
        assert command.kind in ("seek", "pause", "play", "rate")


@settings(max_examples=200)
@given(
    st.dictionaries(
        st.sampled_from(["type", "position", "rate"]),
        st.one_of(st.sampled_from(["seek", "rate", "play"]), st.floats(), st.integers(), st.none()),
    )
)
def test_any_json_object_is_a_command_or_a_reason(data: dict) -> None:  # fmt: skip
    try:
        command = parse_command(json.dumps(data), Fraction(60))
    except ValueError:
        return
    if command.position is not None:
        assert 0 <= command.position <= 60
    if command.rate is not None:
        assert Fraction(1, 4) <= command.rate <= 8
