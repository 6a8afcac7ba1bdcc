"""streamd inside a Python program: run the server and publish numpy frames as live paths.

Two ways in, one server underneath (the same ``RtspServer`` and ``Catalog`` as ``streamd serve``):

- asyncio: ``async with streamd.Server(rtsp_port=8554) as server: pub = server.publish(...)``;
- plain threads (an OpenCV loop, a simulation): ``with streamd.serve_in_thread(...) as server:``,
  where the event loop runs in a background thread and ``publish()`` is safe from any thread.

Either way ``publish()`` returns a :class:`~streamd.live.python_source.FramePublisher` whose
``send()`` only queues (encoding happens in a worker thread), and closing it takes the path
offline. Nothing is served from disk unless ``media=`` names a folder; HTTP is off unless
``http=True``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from streamd.catalog import Catalog
from streamd.config import ServerConfig
from streamd.live.hub import LivePath
from streamd.server import RtspServer

if TYPE_CHECKING:  # imported by publish(): numpy and the encoders cost every other server 0.1 s
    from streamd.live.python_source import FramePublisher

__all__ = ["Server", "ServerThread", "serve_in_thread"]

log = logging.getLogger("streamd")


class Extension(Protocol):
    """What a worker process adds to the server (:class:`streamd.workers.worker.WorkerRuntime`)."""

    async def built(self, rtsp: RtspServer) -> None:
        """The server is composed, not yet listening: hook in."""
        ...

    def http_backend(self, rtsp: RtspServer) -> Any:
        """What the HTTP side shows and acts on (the whole server, not one worker)."""
        ...

    def http_built(self, service: Any) -> None: ...

    async def stop(self) -> None:
        """Before the server stops."""
        ...


class Server:
    """The RTSP server (and optionally HTTP) running on the current event loop."""

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        media: str | Path | None = None,
        http: bool = False,
        extension: Extension | None = None,
        **settings: Any,
    ) -> None:
        """``extension``: what a worker process adds (:mod:`streamd.workers.worker`);
        ``settings`` are :class:`ServerConfig` fields (``rtsp_port``, ``rtp_port``, ``host``, ...);
        the built-in test stream is off unless ``test_stream=True``."""
        base = config if config is not None else ServerConfig(test_stream=False)
        if media is not None:
            settings["media"] = Path(media).expanduser()
        self.config = dataclasses.replace(base, **settings)
        self._folder = self.config.media if (media is not None or config is not None) else None
        self.media_dir: Path | None = None  # the folder served, once started
        self._http = http
        self.rtsp: RtspServer | None = None
        self._web: Any = None
        self._publishers: list[FramePublisher] = []
        self._extension = extension

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        test_stream = None
        if self.config.test_stream:
            from media.testsrc import ensure_test_stream

            # made in the background on the very first start (a few seconds), then cached; a
            # DESCRIBE of /test that arrives meanwhile simply waits for it
            test_stream = loop.run_in_executor(None, ensure_test_stream, self.config.cache_dir)
            test_stream.add_done_callback(_report_test_stream)
        self.media_dir = _media_folder(self._folder)
        catalog = Catalog(
            self.media_dir,
            test_stream=test_stream,
            max_payload_size=self.config.max_payload_size,
            path_settings=self.config.path_settings,
            serve_dotfiles=self.config.serve_dotfiles,
        )
        rtsp = RtspServer(self.config, catalog)
        if self._extension is not None:
            await self._extension.built(rtsp)
        await rtsp.start()
        if self._http:
            from streamd.http import HttpService

            backend = self._extension.http_backend(rtsp) if self._extension is not None else rtsp
            self._web = HttpService(backend, catalog, self.config.host, self.config.http_port)
            if self._extension is not None:
                self._extension.http_built(self._web)
            try:
                await self._web.start()
            except OSError:
                await rtsp.stop()
                raise
        await rtsp.serve()  # worker processes' shared ports: only now that HTTP is taken over too
        self.rtsp = rtsp

    async def stop(self) -> None:
        """Close every publisher (readers get BYE), then stop serving."""
        for publisher in list(self._publishers):
            publisher.close()
        if self._extension is not None:
            await self._extension.stop()
        if self.rtsp is not None:
            await self.rtsp.stop()
            self.rtsp = None
        if self._web is not None:
            await self._web.stop()
            self._web = None

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def rtsp_port(self) -> int:
        return self.rtsp.rtsp_port if self.rtsp is not None else self.config.rtsp_port

    @property
    def rtsps_port(self) -> int | None:
        """The RTSPS port once it listens (None without tls_cert and tls_key)."""
        return self.rtsp.rtsps_port if self.rtsp is not None else None

    @property
    def https_port(self) -> int | None:
        """The HTTPS port once it listens (None without HTTP or without TLS)."""
        return self._web.https_port if self._web is not None else None

    @property
    def http_port(self) -> int | None:
        """The HTTP side's port once it listens (None without HTTP)."""
        return self._web.bound_port if self._web is not None else None

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"rtsp://{host}:{self.rtsp_port}/{path.strip('/')}"

    def publish(
        self,
        path: str,
        width: int,
        height: int,
        fps: float,
        *,
        pixel_format: str = "rgb24",
        bit_rate: int | None = None,
        keyframe_interval: float = 1.0,
        sample_rate: int | None = None,
        channels: int = 2,
        audio_codec: str = "aac",
        audio_bit_rate: int = 128_000,
        max_queued_frames: int = 8,
    ) -> FramePublisher:
        """Serve ``path`` live from numpy frames; with ``sample_rate``, an audio track too.

        Call it on the server's event loop. ValueError when the path is already being published
        (by another publisher here, or by an RTSP client) or a setting is wrong.
        """
        from streamd.live.python_source import AudioSettings, FramePublisher, VideoSettings

        rtsp = self.rtsp
        if rtsp is None:
            raise RuntimeError("the server is not running (use `async with Server(...)` or start())")
        name = path.strip("/")
        if not name:
            raise ValueError("publish needs a path, e.g. 'live/sim'")
        existing = rtsp.live.get(name)
        if existing is not None and existing.online:
            raise ValueError(f"{name!r} is already being published")
        video = VideoSettings(width, height, fps, pixel_format, bit_rate, keyframe_interval)
        audio = AudioSettings(sample_rate, channels, audio_codec, audio_bit_rate) if sample_rate else None

        def on_close(live: LivePath) -> None:
            rtsp.remove_live(live)
            if publisher in self._publishers:
                self._publishers.remove(publisher)

        publisher = FramePublisher(
            name,
            asyncio.get_running_loop(),
            video,
            audio,
            on_close=on_close,
            max_queued_frames=max_queued_frames,
        )
        try:
            rtsp.add_live(publisher.path)
        except ValueError:
            publisher.close()
            raise
        self._publishers.append(publisher)
        return publisher


def _media_folder(folder: Path | None) -> Path | None:
    """The folder to serve, or None (with the reason logged) when there is none to serve."""
    if folder is None:
        return None
    if not folder.is_dir():
        log.info("media folder %s does not exist: serving no files", folder)
        return None
    if (folder / "__init__.py").exists():
        # started from a source checkout, where ./media is streamd's own Python package
        log.info("%s is a Python package, not a media folder: serving no files", folder)
        return None
    return folder


def _report_test_stream(future: asyncio.Future[Path]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("the built-in test stream could not be made: %s", future.exception())


class ServerThread:
    """A :class:`Server` on an event loop of its own, in a background thread: for synchronous code."""

    def __init__(self, server: Server, *, timeout: float = 30.0) -> None:
        self.server = server
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="streamd server", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(server.start(), self._loop).result(timeout)
        except BaseException:
            self._shut_loop()
            raise

    def publish(self, path: str, width: int, height: int, fps: float, **options: Any) -> FramePublisher:
        """As :meth:`Server.publish`, from any thread."""

        async def on_loop() -> FramePublisher:
            return self.server.publish(path, width, height, fps, **options)

        return asyncio.run_coroutine_threadsafe(on_loop(), self._loop).result()

    @property
    def rtsp_port(self) -> int:
        return self.server.rtsp_port

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return self.server.url(path, host)

    def stop(self, timeout: float = 15.0) -> None:
        """Close the publishers, stop the server and its thread. Idempotent."""
        if self._loop.is_closed():
            return
        try:
            asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(timeout)
        finally:
            self._shut_loop()

    def _shut_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_in_thread(
    config: ServerConfig | None = None,
    *,
    media: str | Path | None = None,
    http: bool = False,
    **settings: Any,
) -> ServerThread:
    """Start streamd in a background thread and return once it listens (errors are raised here)."""
    return ServerThread(Server(config, media=media, http=http, **settings))
