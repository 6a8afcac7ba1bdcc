"""ICE host candidates bound inside ``webrtc_udp_ports``, so a firewall can open a known range.

aioice (0.13) binds each host candidate with ``loop.create_datagram_endpoint(...,
local_addr=(address, 0))`` and offers no setting for the port; sharing one port among peers would
need its demultiplexing rewritten. The seam chosen here is the least tied to aioice's private API:
while a gatherer gathers (:func:`bound_in`), a context variable makes the running loop's
``create_datagram_endpoint`` replace port 0 with the first free port of the range. Nothing of
aioice's is subclassed or copied; only that public loop method is wrapped, and only for calls made
inside a gathering (the variable is copied into the tasks aioice starts, and no others). TURN
sockets (no ``local_addr``) stay ephemeral. Should a later aioice bind another way, the check in
:func:`bound_in` sees a host candidate outside the range and refuses the session rather than
quietly using an ephemeral port.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from streamd.webrtc.port_range import PortPicker


class PortsExhausted(Exception):
    """No port of the range was free for a host candidate (the session is refused with 503)."""


class _Gathering:
    def __init__(self, picker: PortPicker) -> None:
        self.picker = picker
        self.exhausted: list[str] = []  # addresses no port could be bound on


_gathering: contextvars.ContextVar[_Gathering | None] = contextvars.ContextVar("ice_ports", default=None)
_BUSY = (errno.EADDRINUSE, errno.EACCES)


def _busy(exc: OSError) -> bool:
    """The port is taken (uvloop raises a plain OSError "from" the one with the errno)."""
    cause = exc.__cause__
    return exc.errno in _BUSY or (isinstance(cause, OSError) and cause.errno in _BUSY)


def _install(loop: asyncio.AbstractEventLoop) -> None:
    """Wrap this loop's ``create_datagram_endpoint`` once (calls outside a gathering pass through)."""
    original = loop.create_datagram_endpoint
    if getattr(original, "_streamd_ports", False):
        return

    async def create_datagram_endpoint(protocol_factory: Callable[[], Any], *args: Any, **kwargs: Any) -> Any:
        gathering = _gathering.get()
        local = kwargs.get("local_addr")
        if gathering is None or args or local is None or local[1] != 0 or kwargs.get("remote_addr"):
            return await original(protocol_factory, *args, **kwargs)
        for port in gathering.picker.order():
            try:
                result = await original(protocol_factory, **{**kwargs, "local_addr": (local[0], port)})
            except OSError as exc:
                if _busy(exc):
                    continue
                raise
            gathering.picker.taken(port)
            return result
        gathering.exhausted.append(local[0])
        ports = gathering.picker.ports
        raise OSError(errno.EADDRINUSE, f"no free UDP port in {ports.low}-{ports.high} on {local[0]}")

    create_datagram_endpoint._streamd_ports = True  # type: ignore[attr-defined]
    loop.create_datagram_endpoint = create_datagram_endpoint  # type: ignore[method-assign]


@asynccontextmanager
async def bound_in(picker: PortPicker | None, ports_of: Callable[[], Sequence[int]]) -> AsyncIterator[None]:
    """Gather inside the block with host ports from ``picker`` (None: ephemeral, as aioice does);
    afterwards ``ports_of()`` (the gathered host candidates' ports) must all be in the range.
    PortsExhausted when an interface found no free port."""
    if picker is None:
        yield
        return
    _install(asyncio.get_running_loop())
    gathering = _Gathering(picker)
    token = _gathering.set(gathering)
    try:
        yield
    finally:
        _gathering.reset(token)
    ports = picker.ports
    if gathering.exhausted:
        raise PortsExhausted(
            f"all UDP ports of webrtc_udp_ports {ports.low}-{ports.high} are in use"
            f" (on {', '.join(gathering.exhausted)}); try again later"
        )
    stray = [p for p in ports_of() if p not in ports]
    if stray:
        raise PortsExhausted(f"host ports {stray}, outside webrtc_udp_ports {ports.low}-{ports.high}")
