"""A browser that closes its connection before its answer is written (leaving a page while
``/mp4`` starts) is the usual end of a view, not a server error: aiohttp would log a traceback
for the exception, so the error middleware turns it into one debug line."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp import web
from aiohttp.client_exceptions import ClientConnectionResetError
from aiohttp.test_utils import make_mocked_request

from streamd.http.app import CLIENT_CLOSED, _errors


async def _left(request: web.Request) -> web.StreamResponse:
    raise ClientConnectionResetError("Cannot write to closing transport")


def test_a_client_that_left_is_one_debug_line_not_an_exception(caplog: pytest.LogCaptureFixture) -> None:
    request = make_mocked_request("GET", "/mp4/a.mp4")
    with caplog.at_level(logging.DEBUG, logger="streamd.http.app"):
        response = asyncio.run(_errors(request, _left))
    assert response.status == CLIENT_CLOSED
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]
    assert "went away" in caplog.records[0].getMessage()
