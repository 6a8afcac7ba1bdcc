"""The socket-free parts of external authorization: the decision cache, token and Basic parsing."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamd.auth.decisions import DecisionCache, decision_key
from streamd.auth.external import basic_credentials, bearer_token, token_from_uri
from streamd.auth.model import AuthResult
from streamd.http.access import media_path
from streamd.http.tunnel import tunnel_target
from streamd.rtsp.errors import RtspError

YES = AuthResult(True, "alice")


def test_cache_forgets_after_its_ttl_and_counts() -> None:
    cache = DecisionCache(ttl=5.0)
    key = decision_key("hook", "alice", "pw", None, "10.0.0.1", "read", "cams/a", "http")
    assert cache.get(key, 0.0) is None
    cache.put(key, YES, 0.0)
    assert cache.get(key, 4.9) is YES
    assert cache.get(key, 5.0) is None  # expired, and dropped
    assert (cache.hits, cache.misses, len(cache)) == (1, 2, 0)


def test_cache_keeps_a_shorter_ttl_and_never_zero() -> None:
    cache = DecisionCache(ttl=5.0)
    cache.put(b"a", YES, 0.0, ttl=1.0)
    cache.put(b"b", YES, 0.0, ttl=0)
    cache.put(b"c", YES, 0.0, ttl=-3)  # a token that has expired already
    assert cache.get(b"a", 0.5) is YES and cache.get(b"a", 1.0) is None
    assert cache.get(b"b", 0.0) is None and cache.get(b"c", 0.0) is None


def test_cache_is_bounded_least_recently_used_first() -> None:
    cache = DecisionCache(ttl=60.0, max_entries=3)
    for key in (b"1", b"2", b"3"):
        cache.put(key, YES, 0.0)
    assert cache.get(b"1", 1.0) is YES  # now the most recent
    cache.put(b"4", YES, 1.0)
    assert len(cache) == 3 and cache.get(b"2", 1.0) is None and cache.get(b"1", 1.0) is YES


def test_keys_tell_none_and_empty_and_boundaries_apart() -> None:
    assert decision_key(None) != decision_key("")
    assert decision_key("ab", "c") != decision_key("a", "bc")


def test_tokens_from_urls_and_headers() -> None:
    assert token_from_uri("rtsp://host:8554/cams/door?jwt=abc.def.ghi") == "abc.def.ghi"
    assert token_from_uri("/mp4/cams/door?start=3&jwt=t") == "t"
    assert token_from_uri("rtsp://host/cams/door") is None and token_from_uri("/x?jwt=") is None
    assert bearer_token("Bearer  abc ") == "abc" and bearer_token("bearer x") == "x"
    assert bearer_token("Basic abc") is None and bearer_token(None) is None and bearer_token("Bearer") is None


def test_basic_credentials() -> None:
    encoded = base64.b64encode(b"alice:se:cret").decode()
    assert basic_credentials(f"Basic {encoded}") == ("alice", "se:cret")
    assert basic_credentials("Basic !!!") is None
    assert basic_credentials("Basic " + base64.b64encode(b"nocolon").decode()) is None
    assert basic_credentials('Digest username="alice"') is None


@given(st.text(max_size=300))
def test_header_and_uri_parsers_never_raise(text: str) -> None:
    basic_credentials(text)
    basic_credentials("Basic " + text)
    bearer_token(text)
    token_from_uri(text)


def test_tunnel_target_and_media_path() -> None:
    assert tunnel_target("/cams/door.mp4") == ("cams/door.mp4", None)
    assert tunnel_target("http://h:80/cams//./door%20x.mp4?jwt=abc") == ("cams/door x.mp4", "abc")
    assert tunnel_target("http://[x/cams") == ("", None)
    assert media_path("cams/./door.mp4") == "cams/door.mp4" and media_path("") == ""
    for bad in ("cams/../secret", "..", "a\0b", "x" * 5000):
        with pytest.raises(RtspError):
            media_path(bad)


@given(st.text(max_size=300))
def test_path_parsers_never_leave_with_dot_dot(text: str) -> None:
    tunnel_target(text)  # never raises
    try:
        checked = media_path(text)
    except RtspError as exc:
        assert exc.status in (400, 404)
    else:
        assert ".." not in checked.split("/") and not checked.startswith("/")
