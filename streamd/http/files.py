"""Progressive download of the original file: ranges, validators and sendfile via aiohttp.

aiohttp's ``FileResponse`` implements single ranges (suffix and open-ended too), ``ETag`` and
``Last-Modified`` with their conditional requests, 416 past the end, and uses ``sendfile``; this
module decides which file (the catalog checked the path) and its media type, and adds what
aiohttp lacks: ``If-Range`` with an entity tag (aiohttp only understands dates there). A range
whose validator no longer matches must get the whole new file (RFC 9110 section 13.1.5).
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from aiohttp import web

# Types the mimetypes module gets wrong or does not know for media files.
MEDIA_TYPES = {
    ".ts": "video/mp2t",
    ".m2ts": "video/mp2t",
    ".mts": "video/mp2t",
    ".mkv": "video/x-matroska",
    ".mka": "audio/x-matroska",
    ".h264": "video/h264",
    ".264": "video/h264",
    ".h265": "video/h265",
    ".hevc": "video/h265",
    ".aac": "audio/aac",
    ".m4a": "audio/mp4",
    ".m4v": "video/mp4",
    ".mp4": "video/mp4",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
    ".opus": "audio/ogg",
    ".flac": "audio/flac",
}


def media_type(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in MEDIA_TYPES:
        return MEDIA_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(path.name, strict=False)
    return guessed or "application/octet-stream"


def etag_of(file: Path) -> str:
    """The strong entity tag aiohttp's FileResponse sends (modification time and size)."""
    st = file.stat()
    return f'"{st.st_mtime_ns:x}-{st.st_size:x}"'


async def send_file(request: web.Request, file: Path) -> web.StreamResponse:
    response = web.FileResponse(file, headers={"Content-Type": media_type(file)})
    response.headers["Cache-Control"] = "no-cache"  # revalidate with ETag/Last-Modified
    condition = request.headers.get("If-Range", "")
    is_tag = condition.startswith(('"', "W/")) and "Range" in request.headers
    if is_tag and (condition.startswith("W/") or condition != etag_of(file)):  # strong comparison only
        headers = request.headers.copy()
        del headers["Range"]
        del headers["If-Range"]
        await response.prepare(request.clone(headers=headers))
    return response
