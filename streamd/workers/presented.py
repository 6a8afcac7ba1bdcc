"""A unix-socket transport presented as what the server code above it must see.

Connections between workers arrive on unix sockets, which have no peer address and no TLS; the
RTSP and tunnel code reads who the client is (``peername``, ``sockname``) and whether it is
encrypted (``ssl_object``) from the transport. :class:`Presented` answers those from the values
given and passes everything else to the real transport. ``socket`` is never given out: such a
connection is not handed over to another process as a socket.
"""

from __future__ import annotations

import asyncio
from typing import Any


class ForwardedTls:
    """The ``ssl_object`` of a connection whose TLS another worker terminated: only ``is not None``
    is asked of it (``RtspConnection.secure``, tunnels), and that is true."""

    def __repr__(self) -> str:
        return "<TLS terminated by a sibling worker>"


FORWARDED_TLS = ForwardedTls()


class Presented(asyncio.Transport):
    def __init__(self, inner: asyncio.Transport, extras: dict[str, Any]) -> None:
        super().__init__()
        self._inner = inner
        self._extras = {"socket": None, **extras}

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name in self._extras:
            value = self._extras[name]
            return default if value is None else value
        return self._inner.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._inner.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._inner.get_protocol()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._inner.write(data)

    def is_closing(self) -> bool:
        return self._inner.is_closing()

    def close(self) -> None:
        self._inner.close()

    def abort(self) -> None:
        self._inner.abort()

    def is_reading(self) -> bool:
        return self._inner.is_reading()

    def pause_reading(self) -> None:
        self._inner.pause_reading()

    def resume_reading(self) -> None:
        self._inner.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._inner.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._inner.get_write_buffer_size()
