from __future__ import annotations

import contextlib
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamd.rtsp.errors import RtspError
from streamd.rtsp.headers.rate import format_rate, parse_rate
from streamd.rtsp.parameters import format_parameters, parameter_names, parameter_values


def test_names_and_values() -> None:
    assert parameter_names(b"") == []
    assert parameter_names(b"position\r\nScale\r\n\r\n") == ["position", "scale"]
    assert parameter_values(b"Barparam: barstuff\r\n") == {"barparam": "barstuff"}
    assert format_parameters({"position": "1.5"}) == b"position: 1.5\r\n"
    with pytest.raises(RtspError):
        parameter_values(b"no colon here\r\n")


@pytest.mark.parametrize(
    ("text", "value"), [("2", 2), ("-1.0", -1), ("0.5", Fraction(1, 2)), (" 4.25 ", Fraction(17, 4))]
)
def test_parse_rate(text: str, value: Fraction) -> None:
    assert parse_rate(text, "Scale") == value


@pytest.mark.parametrize("text", ["", "fast", "1/2", "1e3", "--1"])
def test_bad_rate(text: str) -> None:
    with pytest.raises(RtspError) as err:
        parse_rate(text, "Scale")
    assert err.value.status == 400


def test_format_rate() -> None:
    assert [format_rate(Fraction(v)) for v in (1, 2, Fraction(1, 2), -4)] == ["1.0", "2.0", "0.5", "-4.0"]


@given(st.binary(max_size=500))
def test_parameter_parsers_never_crash(body: bytes) -> None:
    with contextlib.suppress(RtspError):
        parameter_names(body)
    with contextlib.suppress(RtspError):
        parameter_values(body)


@given(st.text(max_size=40))
def test_rate_parser_never_crashes(text: str) -> None:
    with contextlib.suppress(RtspError):
        parse_rate(text, "Speed")
