"""The live media playlist (RFC 8216bis with the low-latency tags) of a :class:`LiveSegmenter`.

Written as text rather than through the ``m3u8`` package's objects: the playlist is rebuilt for
every new part (five times a second per path), a trailing run of parts without a segment URI is
not something its ``dumps`` writes cleanly, and the exact number formatting matters to caches
(identical playlists must be identical bytes). The tests parse every playlist with ``m3u8``.

Plain HLS clients read the same text: they skip the ``EXT-X-PART``/``PRELOAD-HINT`` tags and play
the segments. Parts are listed for the segments of the last three target durations only
(6.2.2: they SHOULD go after that), and a delta update (``_HLS_skip``) replaces the segments
further than ``CAN-SKIP-UNTIL`` (six target durations) from the end with ``EXT-X-SKIP``.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from streamd.hls.live_segmenter import LiveSegmenter, Segment

SKIP_TARGETS = 6  # CAN-SKIP-UNTIL in target durations (the spec's minimum)
PART_HOLD_BACK_PARTS = 3  # PART-HOLD-BACK in part targets (the spec says at least 2, SHOULD 3)
PARTS_LISTED_TARGETS = 3  # segments whose parts are listed, counted back from the end


@dataclass(frozen=True)
class LiveNames:
    """The URIs of a stream's resources, relative to the media playlist (``/hls/<path>/main/``).

    Each begins with the stream's id, which changes with each publishing of the path, so a URI
    never names two contents and caches may keep every object forever."""

    stream: str
    query: str = ""  # carried into every URI (``?jwt=...``)

    def init(self) -> str:
        return f"{self.stream}-init.mp4{self.query}"

    def segment(self, msn: int) -> str:
        return f"{self.stream}-{msn}.m4s{self.query}"

    def part(self, number: int) -> str:
        """Parts go by their number in the stream, not (segment, index): the preload hint names the
        next part before anyone knows whether a keyframe will make it begin a new segment."""
        return f"{self.stream}-part{number}.m4s{self.query}"


def _seconds(value: float) -> str:
    return f"{value:.5f}".rstrip("0").rstrip(".") if value else "0"


def _date(wall: float) -> str:
    moment = datetime.datetime.fromtimestamp(wall, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def skip_until(segmenter: LiveSegmenter) -> float:
    return SKIP_TARGETS * segmenter.target_duration


def render(segmenter: LiveSegmenter, names: LiveNames, *, skip: bool = False) -> str:
    """The playlist as it stands; ``skip`` asks for a delta update (ignored once it has ended)."""
    target = segmenter.target_duration
    part_target = segmenter.part_target or 0.0
    complete = list(segmenter.segments)
    skip = skip and not segmenter.ended
    skipped = 0
    if skip:
        end = complete[-1].start + complete[-1].duration if complete else 0.0
        boundary = end - skip_until(segmenter)
        while skipped < len(complete) and complete[skipped].start + complete[skipped].duration < boundary:
            skipped += 1
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{9 if skipped else 6}",
        f"#EXT-X-TARGETDURATION:{target}",
    ]
    if not segmenter.ended:
        hold_back = _seconds(round(PART_HOLD_BACK_PARTS * part_target, 5))
        lines.append(
            f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={_seconds(skip_until(segmenter))},"
            f"PART-HOLD-BACK={hold_back}"
        )
    lines.append(f"#EXT-X-PART-INF:PART-TARGET={_seconds(part_target)}")
    first = complete[0].msn if complete else (segmenter.open.msn if segmenter.open else 0)
    lines.append(f"#EXT-X-MEDIA-SEQUENCE:{first}")
    lines.append(f'#EXT-X-MAP:URI="{names.init()}"')
    if skipped:
        lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")
    listed = complete[skipped:]
    end = (listed[-1].start + listed[-1].duration) if listed else 0.0
    if segmenter.open is not None:
        end = segmenter.open.start + segmenter.open.duration
    parts_from = end - PARTS_LISTED_TARGETS * target
    for segment in listed:
        _segment_lines(lines, segment, names, with_parts=segment.start + segment.duration > parts_from)
    if segmenter.open is not None:
        _segment_lines(lines, segmenter.open, names, with_parts=True)
    if segmenter.ended:
        lines.append("#EXT-X-ENDLIST")
    else:
        lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{names.part(segmenter.parts_made)}"')
    return "\n".join(lines) + "\n"


def _segment_lines(lines: list[str], segment: Segment, names: LiveNames, *, with_parts: bool) -> None:
    if segment.wall is not None:
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_date(segment.wall)}")
    if with_parts:
        for part in segment.parts:
            independent = ",INDEPENDENT=YES" if part.independent else ""
            uri = names.part(part.number)
            lines.append(f'#EXT-X-PART:DURATION={_seconds(part.duration)},URI="{uri}"{independent}')
    if segment.complete:
        lines.append(f"#EXTINF:{_seconds(segment.duration)},")
        lines.append(names.segment(segment.msn))
