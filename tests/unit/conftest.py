"""Fixtures the unit modules share."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.harness import make_media


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The harness's media folder (a clip and a live-path stand-in), made once per module; a
    module that needs other media defines its own ``media``."""
    return make_media(tmp_path_factory.mktemp("media"))
