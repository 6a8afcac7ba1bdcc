"""Maps request paths to presentations: the built-in test stream and files under the media folder.

Nothing is scanned at start-up; a file is probed on its first DESCRIBE and the result is kept
until the file's size or modification time changes, so a folder of 10,000 files costs nothing
until it is used. Probing runs in the ``probe`` pool (streamd/executors.py) so one slow file
never stalls other clients, and probes never wait behind playback or HTTP remuxes.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from media.errors import MediaError, UnsupportedMedia
from media.probe import probe
from streamd import executors
from streamd.config import PathSettings
from streamd.rtp.presentation import Presentation, build_presentation, build_ts_presentation
from streamd.rtsp.errors import RtspError

log = logging.getLogger(__name__)

TEST_PATH = "test"
MAX_CACHED = 4096
PARTIAL_SUFFIX = ".part"  # a recording still being written (streamd/live/recorder.py)


@dataclass(frozen=True)
class Resolved:
    presentation: Presentation
    file: Path


class Catalog:
    """Resolves a URL path (already percent-decoded, without leading slash) to a presentation."""

    def __init__(
        self,
        media_dir: Path | None,
        *,
        test_stream: Path | asyncio.Future[Path] | None,
        max_payload_size: int = 1400,
        path_settings: Callable[[str], PathSettings] = lambda _path: PathSettings(),
        serve_dotfiles: bool = False,
    ) -> None:
        self.media_dir = media_dir.resolve() if media_dir else None
        self.serve_dotfiles = serve_dotfiles  # else names starting with "." are hidden everywhere
        self.path_settings = path_settings
        self.test_stream = test_stream
        self.max_payload_size = max_payload_size
        self._cache: OrderedDict[str, tuple[tuple[int, int], Presentation]] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}

    def locate(self, path: str) -> tuple[Path, bool]:
        """The file behind ``path`` and whether it loops. Raises 404/403 with the reason."""
        if path == TEST_PATH and isinstance(self.test_stream, Path):
            return self.test_stream, True
        if self.media_dir is None:
            raise RtspError(404, f"no stream named {path!r} (no media folder configured)")
        parts = PurePosixPath(path).parts
        if (
            not parts
            or any(p in ("..", ".") or "\\" in p or "\0" in p for p in parts)
            or path.startswith("/")
        ):
            raise RtspError(404, f"invalid path {path!r}")
        if not self.serve_dotfiles and any(p.startswith(".") for p in parts):
            raise RtspError(404, f"no file {path!r} in the media folder (hidden names are not served)")
        candidate = (self.media_dir / Path(*parts)).resolve()
        if not candidate.is_relative_to(self.media_dir):
            raise RtspError(403, f"{path!r} points outside the media folder")
        hidden = candidate.relative_to(self.media_dir).parts
        if not self.serve_dotfiles and any(p.startswith(".") for p in hidden):  # a link to one
            raise RtspError(404, f"no file {path!r} in the media folder (hidden names are not served)")
        if not candidate.is_file():
            raise RtspError(404, f"no file {path!r} in the media folder")
        if candidate.name.endswith(PARTIAL_SUFFIX):
            raise RtspError(404, f"{path!r} is still being recorded")
        if not os.access(candidate, os.R_OK):
            raise RtspError(404, f"{path!r} is not readable")
        return candidate, False

    def list_paths(self, limit: int = 10_000) -> list[str]:
        """Every servable path (test stream first, then files, sorted), up to ``limit``.

        Walks the folder on each call (the HTTP index page uses it); hidden entries are skipped
        and symbolic links are not followed out of the folder.
        """
        paths = [TEST_PATH] if self.test_stream is not None else []
        if self.media_dir is None:
            return paths
        files: list[str] = []
        hidden = "" if self.serve_dotfiles else "."
        for folder, dirs, names in os.walk(self.media_dir):
            dirs[:] = sorted(d for d in dirs if not (hidden and d.startswith(hidden)))
            for name in sorted(names):
                if (hidden and name.startswith(hidden)) or name.endswith(PARTIAL_SUFFIX):
                    continue
                full = Path(folder, name)
                if not full.resolve().is_relative_to(self.media_dir):
                    continue
                files.append(full.relative_to(self.media_dir).as_posix())
                if len(files) + len(paths) >= limit:
                    return paths + files
        return paths + files

    async def resolve(self, path: str) -> Resolved:
        """The presentation for ``path``, probing the file if it is new or changed.

        ``sub//x`` and ``sub/./x`` are ``sub/x``: one cache entry, one probe."""
        if not path.startswith("/"):
            path = "/".join(part for part in path.split("/") if part not in ("", ".")) or path
        if path == TEST_PATH and isinstance(self.test_stream, asyncio.Future):
            try:
                self.test_stream = await asyncio.shield(self.test_stream)
            except Exception as exc:
                raise RtspError(503, f"the built-in test stream could not be made: {exc}") from exc
        file, loop = self.locate(path)
        settings = self.path_settings(path)
        if settings.loop is not None:
            loop = settings.loop
        try:
            st = file.stat()
        except OSError as exc:
            raise RtspError(404, f"cannot stat {path!r}: {exc.strerror}") from exc
        stamp = (st.st_mtime_ns, st.st_size)
        key = f"{path}\0{loop}\0{settings.mode}\0{settings.transcode_audio}"
        cached = self._cache.get(key)
        if cached and cached[0] == stamp:
            self._cache.move_to_end(key)
            return Resolved(cached[1], file)
        lock = self._locks.setdefault(path, asyncio.Lock())
        async with lock:
            cached = self._cache.get(key)
            if cached and cached[0] == stamp:
                return Resolved(cached[1], file)
            presentation = await executors.run(
                "probe", self._build, path, file, loop, settings.mode, settings.transcode_audio
            )
            self._cache[key] = (stamp, presentation)
            self._cache.move_to_end(key)
            while len(self._cache) > MAX_CACHED:
                self._cache.popitem(last=False)
        self._locks.pop(path, None)
        return Resolved(presentation, file)

    def _public(self, text: str, file: Path, path: str) -> str:
        """``text`` for the client: the request path instead of the server's own folder names."""
        text = text.replace(str(file), path)
        if self.media_dir is not None:
            text = text.replace(f"{self.media_dir}/", "").replace(str(self.media_dir), "the media folder")
        return text

    def _build(
        self, path: str, file: Path, loop: bool, mode: str = "tracks", transcode_audio: str | None = None
    ) -> Presentation:
        try:
            info = probe(file)
        except MediaError as exc:  # the file exists (locate checked): it is not media we can read
            raise RtspError(415, str(exc), body=self._public(str(exc), file, path) + "\n") from exc
        except Exception as exc:  # PyAV raises many types on broken files; report, never crash
            raise RtspError(500, f"cannot read {path!r}: {exc}") from exc
        if mode == "mpegts":
            return build_ts_presentation(path, info, loop=loop, max_payload_size=self.max_payload_size)
        try:
            presentation = build_presentation(
                path,
                info,
                loop=loop,
                max_payload_size=self.max_payload_size,
                title="streamd test stream" if path == TEST_PATH else None,
                transcode_audio=transcode_audio,
            )
        except UnsupportedMedia as exc:
            raise RtspError(415, str(exc), body=self._public(str(exc), file, path) + "\n") from exc
        for track, why in presentation.excluded:
            log.info("%s: track %d (%s) left out: %s", path, track.index, track.codec, why)
        return presentation
