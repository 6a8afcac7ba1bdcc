"""Which worker converts a file for WebRTC viewers (:mod:`streamd.workers.file_placement`), and
that a WHEP offer of such a file is placed there (:class:`streamd.workers.http_owner.Placement`),
without processes or sockets."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st

from media.probe import probe
from streamd.config import ServerConfig
from streamd.rtp.presentation import build_presentation
from streamd.workers.file_placement import chosen, converts_for_webrtc
from streamd.workers.http_owner import Placement
from streamd.workers.ownership import Owner
from tests import mediagen

# --- the rule ------------------------------------------------------------------------------------


@given(st.text(max_size=200), st.integers(1, 16))
def test_every_worker_chooses_the_same_running_worker(path: str, count: int) -> None:
    everyone = range(count)
    first = chosen(path, count, everyone)
    assert first is not None and 0 <= first < count
    assert chosen(path, count, list(reversed(everyone))) == first  # not the order asked in
    rest = [i for i in everyone if i != first]
    later = chosen(path, count, rest)  # the chosen one restarts: the next in order takes its files
    assert later == (
        None if not rest else next(i % count for i in range(first + 1, first + count) if i % count in rest)
    )
    assert chosen(path, count, []) is None


def test_files_spread_over_the_workers() -> None:
    assert {chosen(f"film-{n}.mp4", 4, range(4)) for n in range(64)} == {0, 1, 2, 3}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("file-placement")
    return {
        "h264-aac": mediagen.make_h264_aac_mp4(folder / "a.mp4", seconds=1, bframes=False, size=(160, 120)),
        "bframes-video": mediagen.make_with_ffmpeg(folder / "b.mp4", "-c:v", "libx264", "-bf", "2"),
        "h264-opus": mediagen.make_with_ffmpeg(
            folder / "c.mkv", "-c:v", "libx264", "-bf", "0", "-c:a", "libopus", audio_tracks=1
        ),
    }


def _presentation(file: Path) -> Any:
    return build_presentation(file.name, probe(file))


def test_what_browsers_cannot_take_as_it_is_needs_the_one_converter(files: dict[str, Path]) -> None:
    assert converts_for_webrtc(_presentation(files["h264-aac"]))  # AAC to Opus
    assert converts_for_webrtc(_presentation(files["bframes-video"]))  # B-frames to baseline
    assert not converts_for_webrtc(_presentation(files["h264-opus"]))  # served as it is, anywhere
    looping = dataclasses.replace(_presentation(files["h264-aac"]), loop=True)
    assert not converts_for_webrtc(looping)  # converted by each viewer for itself, not in chunks


# --- the offer's way ------------------------------------------------------------------------------


@dataclass
class Live:
    online: bool = True


@dataclass
class Paths:
    config: ServerConfig = field(default_factory=ServerConfig)
    live: dict[str, Live] = field(default_factory=dict)
    siblings: None = None


class NoOwners:
    async def owner(self, path: str) -> Owner | None:
        return None


async def _nobody(kind: str, key: str) -> int | None:
    return None


ROUTES = {"whep": "/whep/{path}", "hls": "/hls/{path}/index.m3u8"}


def _place(method: str, url: str, paths: Paths, converter: int | None) -> tuple[int | None, list[str]]:
    asked: list[str] = []

    async def converters(path: str) -> int | None:
        asked.append(path)
        return converter

    async def main() -> int | None:
        route, _, rest = url[1:].partition("/")
        path = rest.removesuffix("/index.m3u8")
        request = make_mocked_request(method, url, match_info={"path": path})
        request.match_info.route.resource.canonical = ROUTES[route]  # as the app's router resolves it
        placement = Placement(0, paths, NoOwners(), _nobody, lambda kind, key: False, converters)  # type: ignore[arg-type]
        return await placement(request)

    return asyncio.run(main()), asked


def test_a_files_offer_goes_to_its_converter_and_nothing_else_does() -> None:
    assert _place("POST", "/whep/films/a.mp4", Paths(), 1) == (1, ["films/a.mp4"])
    assert _place("POST", "/whep/films/a.mp4", Paths(), 0) == (None, ["films/a.mp4"])  # we convert it
    assert _place("POST", "/whep/films/a.mp4", Paths(), None) == (None, ["films/a.mp4"])  # needs none
    live_here = Paths(live={"live/cam": Live()})
    assert _place("POST", "/whep/live/cam", live_here, 1) == (None, [])  # published here
    assert _place("GET", "/hls/films/a.mp4/index.m3u8", Paths(), 1) == (None, [])  # not an offer
    assert _place("OPTIONS", "/whep/films/a.mp4", Paths(), 1) == (None, [])  # a preflight
