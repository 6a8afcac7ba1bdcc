"""The tunnel's base64 decoder: any split of any sequence of separately encoded pieces."""

from __future__ import annotations

import base64
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamd.http.b64stream import Base64Error, Base64Stream

pieces = st.lists(st.binary(min_size=1, max_size=64), min_size=1, max_size=8)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@given(pieces, st.lists(st.integers(min_value=0), max_size=10), st.booleans())
def test_any_split_of_encoded_pieces_decodes_to_their_concatenation(
    messages: list[bytes], cuts: list[int], wrap: bool
) -> None:
    text = b"".join(base64.b64encode(m) + (b"\r\n" if wrap else b"") for m in messages)
    decoder = Base64Stream()
    out = b"".join(decoder.feed(part) for part in _split(text, cuts))
    assert out == b"".join(messages)
    assert decoder.pending == 0


@given(st.binary(max_size=200))
def test_arbitrary_input_decodes_or_raises_base64_error(junk: bytes) -> None:
    decoder = Base64Stream()
    try:
        decoder.feed(junk)
    except Base64Error:
        return
    assert decoder.pending < 4


@pytest.mark.parametrize("bad", [b"ab$d", b"a===", b"=abc", b"ab=c", b"QQ==QQ=a"])
def test_rejects_non_base64(bad: bytes) -> None:
    with pytest.raises(Base64Error):
        Base64Stream().feed(bad)


def test_holds_an_incomplete_quantum() -> None:
    decoder = Base64Stream()
    assert decoder.feed(b"aGVsb") == b"hel"
    assert decoder.pending == 1
    assert decoder.feed(b"G8=") == b"lo"
