"""The ``webrtc_udp_ports`` setting: parsing, validation and the port picker (no sockets)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamd.config import ConfigError, ServerConfig
from streamd.webrtc.port_range import PortPicker, PortRange, parse_port_range


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("40000-40999", PortRange(40000, 40999)),
        (" 40000 - 40004 ", PortRange(40000, 40004)),
        ("5000", PortRange(5000, 5000)),
        ([40000, 40999], PortRange(40000, 40999)),
        ((1, 65535), PortRange(1, 65535)),
    ],
)
def test_ranges_are_read(value: object, expected: PortRange | None) -> None:
    assert parse_port_range(value) == expected


@pytest.mark.parametrize(
    "value",
    ["", "40000-", "-40000", "a-b", "1-2-3", "40999-40000", "0-10", "65000-65536", [1], [1, 2, 3],
     [1.5, 2], [True, 2], 40000, {"low": 1}],
)  # fmt: skip
def test_bad_ranges_are_refused_with_the_reason(value: object) -> None:
    with pytest.raises(ValueError, match="webrtc_udp_ports"):
        parse_port_range(value)


def test_config_refuses_a_bad_range_and_keeps_a_good_one() -> None:
    with pytest.raises(ConfigError, match="webrtc_udp_ports"):
        ServerConfig(webrtc_udp_ports="40999-40000")
    assert ServerConfig(webrtc_udp_ports="40000-40004").webrtc_udp_ports == "40000-40004"
    assert ServerConfig().webrtc_udp_ports is None  # unset: ephemeral ports, as before


@given(st.text(max_size=20) | st.lists(st.integers(-10, 70000), max_size=3))
def test_any_value_is_a_range_inside_the_port_space_or_a_value_error(value: object) -> None:
    try:
        ports = parse_port_range(value)
    except ValueError:
        return
    assert ports is not None and 1 <= ports.low <= ports.high <= 65535


def test_picker_tries_every_port_once_starting_after_the_last_taken() -> None:
    picker = PortPicker(PortRange(100, 104))
    assert list(picker.order()) == [100, 101, 102, 103, 104]
    picker.taken(102)
    assert list(picker.order()) == [103, 104, 100, 101, 102]
    picker.taken(104)  # wraps around
    assert list(picker.order()) == [100, 101, 102, 103, 104]


def test_picker_of_one_port() -> None:
    picker = PortPicker(PortRange(7, 7))
    picker.taken(7)
    assert list(picker.order()) == [7]
