"""The HLS URL layout: what each name means, and that anything else means nothing."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streamd.hls import urls
from streamd.hls.routes import ROUTE_NAMES
from streamd.hls.vod import etag_matches
from streamd.http.access import RULES


def test_names_of_the_layout() -> None:
    assert urls.parse("main", "media.m3u8") == urls.MediaPlaylist("main", "fmp4")
    assert urls.parse("a2", "ts.m3u8") == urls.MediaPlaylist("a2", "ts")
    assert urls.parse("main", "init.mp4") == urls.InitSegment("main")
    assert urls.parse("main", "0.m4s") == urls.Segment("main", 0, "fmp4")
    assert urls.parse("a1", "17.ts") == urls.Segment("a1", 17, "ts")
    assert urls.audio_index("a12") == 12 and urls.audio_index("main") is None
    for number in (0, 9, 12345):
        for fmt in ("fmp4", "ts"):
            name = urls.segment_name(number, fmt)  # type: ignore[arg-type]
            assert urls.parse("main", name) == urls.Segment("main", number, fmt)  # type: ignore[arg-type]


def test_other_names_mean_nothing() -> None:
    for rendition, name in [
        ("main", "01.m4s"),
        ("main", "-1.m4s"),
        ("main", "1.mp4"),
        ("main", "99999999999.m4s"),
        ("video", "0.m4s"),
        ("a01", "0.m4s"),
        ("main", "media.m3u8x"),
        ("main", "1.m4s "),
    ]:
        assert urls.parse(rendition, name) is None, (rendition, name)


@given(st.text(max_size=12), st.text(max_size=20))
def test_any_name_parses_or_is_refused(rendition: str, name: str) -> None:
    target = urls.parse(rendition, name)
    if isinstance(target, urls.Segment):
        assert name == urls.segment_name(target.number, target.format)
        assert 0 <= target.number <= urls.MAX_SEGMENT


def test_every_hls_route_reads_its_path() -> None:
    for name in ROUTE_NAMES:
        assert RULES[name] == "read"


def test_if_none_match_compares_weakly_and_takes_lists_and_star() -> None:
    tag = '"abc-main-0.m4s"'
    assert etag_matches(tag, tag) and etag_matches(f"W/{tag}", tag) and etag_matches(f'"x", {tag}', tag)
    assert etag_matches("*", tag) and not etag_matches(None, tag) and not etag_matches('"abc"', tag)


@given(st.text(max_size=80))
def test_any_if_none_match_value_is_answered(header: str) -> None:
    assert etag_matches(header, '"v-main-1.m4s"') in (True, False)
