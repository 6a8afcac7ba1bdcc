"""Cluster settings (TOML keys, flags, their checks) and the parsers of what the cluster reads
back from Redis (a claim's value, a node's registration): property tests, since anything with
access to the database can write there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from streamd.cli import build_parser
from streamd.cluster.store import Claim, NodeInfo
from streamd.config import ConfigError, PathSettings, ServerConfig, load_config


def test_cluster_settings_from_toml_and_flags(tmp_path: Path) -> None:
    file = tmp_path / "streamd.toml"
    file.write_text(
        'cluster = "redis://r:6379/0"\nnode_address = "rtsp://10.0.0.2:8554"\ncluster_heartbeat = 0.5\n'
        'cluster_balance = true\ncluster_balance_margin = 3\n[paths."live/*"]\ncluster_mode = "redirect"\n'
    )
    config = load_config(file, {})
    assert config.cluster == "redis://r:6379/0" and config.node_address == "rtsp://10.0.0.2:8554"
    assert config.cluster_heartbeat == 0.5 and config.cluster_balance and config.cluster_balance_margin == 3
    assert config.path_settings("live/cam").cluster_mode == "redirect"
    assert ServerConfig().cluster is None and PathSettings().cluster_mode == "relay"
    args = build_parser().parse_args(["serve", "--cluster", "redis://x/1", "--node-address", "rtsp://n:1"])
    assert (args.cluster, args.node_address) == ("redis://x/1", "rtsp://n:1")


@pytest.mark.parametrize(
    "settings",
    [
        {"cluster": "http://r:6379"},
        {"cluster": 5},
        {"node_address": "rtsp://n:8554/live"},
        {"node_address": "http://n:8554"},
        {"cluster_heartbeat": 0},
        {"cluster_heartbeat": 600},
        {"cluster_heartbeat": True},
        {"cluster_balance_margin": 0},
    ],
)
def test_wrong_cluster_settings_are_refused(settings: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        ServerConfig(**settings)  # type: ignore[arg-type]


def test_wrong_cluster_mode_is_refused() -> None:
    with pytest.raises(ConfigError, match="cluster_mode"):
        PathSettings(cluster_mode="pull")


@given(st.one_of(st.binary(max_size=80), st.text(max_size=80)))
@example(b"\xff\xfe 1")
@example("\u00b2 rtsp://a:1")  # a Unicode digit is not a token
def test_any_claim_value_parses_or_is_refused(value: bytes | str) -> None:
    claim = Claim.parse("live/x", value)
    if claim is not None:
        assert claim.token >= 0 and claim.node and Claim.parse("live/x", claim.value) == claim


@given(
    st.integers(min_value=0, max_value=2**63), st.text(min_size=1, max_size=40).filter(lambda s: s[0] != " ")
)
def test_claim_values_round_trip(token: int, node: str) -> None:
    assert Claim.parse("p", Claim("p", node, token).value) == Claim("p", node, token)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=6),
    max_leaves=12,
)


@given(st.one_of(st.binary(max_size=120), json_values.map(json.dumps)))
@example('{"id": "a", "rtsp": "a", "load": 1e400, "draining": false, "clock": 0}')
@example('{"id": "a", "rtsp": "a", "load": NaN, "draining": false, "clock": 0}')
@example("[1, 2]")
def test_any_registration_decodes_or_is_refused(text: bytes | str) -> None:
    node = NodeInfo.decode(text)
    if node is not None:
        assert (
            isinstance(node.load, int) and isinstance(node.draining, bool) and isinstance(node.clock, float)
        )


@given(st.integers(0, 10**6), st.booleans(), st.floats(allow_nan=False, allow_infinity=False))
def test_registrations_round_trip(load: int, draining: bool, clock: float) -> None:
    node = NodeInfo("rtsp://a:1", "rtsp://a:1", load, draining, clock)
    assert NodeInfo.decode(node.encode()) == node
