"""hls.js for the HLS tests in headless Chromium: installed from the npm registry by scripts/test
(``npm install hls.js@1`` into the git-ignored ``tests/.hlsjs``), never committed.

A test opens a page of streamd's own origin, then :func:`load_hls_js` evaluates hls.js in it, so
the player's requests are same-origin (no CORS in the way) and reach streamd as a browser's would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
HLS_JS = ROOT / "tests" / ".hlsjs" / "node_modules" / "hls.js" / "dist" / "hls.min.js"


def hls_js_path() -> Path:
    """The installed ``hls.min.js``; skips the test (naming the command that installs it) if absent."""
    if not HLS_JS.is_file():
        pytest.skip("hls.js is not installed (scripts/test runs: npm install --prefix tests/.hlsjs hls.js@1)")
    return HLS_JS


async def load_hls_js(tab: Any) -> None:
    """Define ``window.Hls`` in ``tab``'s page (a :class:`tests.integration.chromium.DevTools`)."""
    source = hls_js_path().read_text()
    await tab.call("Runtime.evaluate", expression=source, returnByValue=True)
    assert await tab.evaluate("typeof Hls === 'function' && Hls.isSupported()"), "hls.js needs MSE"


# a <video> playing ``url`` through hls.js in low-latency mode; errors kept in window.hlsErrors
PLAY_WITH_HLS_JS = """(() => {{
  const video = document.createElement('video');
  video.muted = true; video.autoplay = true; video.id = 'hlsjs';
  document.body.appendChild(video);
  window.hlsErrors = [];
  const hls = new Hls({{lowLatencyMode: true}});
  window.hls = hls;
  hls.on(Hls.Events.ERROR,
    (event, data) => window.hlsErrors.push(data.details + (data.fatal ? ' (fatal)' : '')));
  hls.loadSource({url!r});
  hls.attachMedia(video);
  video.play().catch(() => {{}});
  return true;
}})()"""

# truthy once the <video id=...> played N seconds (or failed): its state
PLAYED = (
    "(() => {{ const v = document.getElementById({id!r});"
    " return (v.error || v.currentTime > {seconds}) &&"
    " {{t: v.currentTime, error: v.error && v.error.message, w: v.videoWidth}} }})()"
)
