"""The two HTML pages: the index of paths and the player. Plain HTML and CSS, no build step.

The index works without JavaScript; the player page needs none either for H.264 (the ``<video>``
element plays the fragmented MP4 by itself), a few lines of script report playback errors and
switch to the file's HLS playlist where the browser plays HLS natively. For
video some browsers lack (HEVC, AV1, VP9) the script first asks the browser whether it plays the
file's exact codec string and, if not, plays ``?video=h264``: a copy the server converts to H.264
for this request. Without script that copy is what plays.
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from streamd.http.listing import PathEntry
from streamd.version import __version__

STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:72rem;padding:1rem 1.5rem;color:#1d1d1f}
h1{font-size:1.4rem;margin:.2rem 0 1rem}h1 small{font-weight:normal;color:#666;font-size:.9rem}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.35rem .6rem;vertical-align:top}
th{border-bottom:2px solid #ccc;font-size:.85rem;color:#444}tr+tr td{border-top:1px solid #e5e5e5}
td.num{text-align:right;}td.links{white-space:nowrap}td.num{font-variant-numeric:tabular-nums}code{font-size:.85rem}
.err{color:#a33}.note{color:#8a5a00}.live{color:#06893a;font-weight:600}a{color:#0650b5}
video{width:100%;max-height:75vh;background:#000}footer{margin-top:1.5rem;color:#777;font-size:.8rem}
"""


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>\n{body}\n"
        f'<footer>streamd {escape(__version__)} · <a href="/api/v1/openapi.json">API</a> · '
        '<a href="/metrics">metrics</a> · <a class=login href="/login">log in</a></footer></body></html>\n'
    )


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    whole = int(seconds)
    return (
        f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
        if whole >= 3600
        else (f"{whole // 60}:{whole % 60:02d}")
    )


def _row(entry: PathEntry) -> str:
    name = escape(entry.name)
    links = f'<a href="{escape(entry.rtsp_url)}">rtsp</a> · <a href="{escape(entry.sdp_url)}">sdp</a>'
    if entry.hls_url:
        links += f' · <a href="{escape(entry.hls_url)}">hls</a>'
    if entry.multicast_sdp_url:
        links += f' · <a href="{escape(entry.multicast_sdp_url)}">multicast sdp</a>'
    if entry.error is not None:
        return (
            f"<tr><td>{name}</td><td colspan=5 class=err>{escape(entry.error)}</td>"
            f'<td class=links><a href="{escape(entry.file_url)}">download</a></td></tr>'
        )
    size = f"{entry.width}×{entry.height}" if entry.width and entry.height else ""
    kind = "<span class=live>live</span>" if entry.live else "on demand"
    if entry.recording:
        kind += " · <span class=err>● recording</span>"
    if not entry.file_url:  # a path being published: watched from its live edge, no download
        return (
            f'<tr><td><a class=watch href="{escape(entry.watch_url)}">{name}</a></td>'
            f"<td>{escape(', '.join(entry.codecs))}</td><td>{size}</td>"
            f"<td class=num></td><td>{kind}</td><td class=num>{entry.viewers}</td>"
            f'<td class=links><a class=watch href="{escape(entry.watch_url)}">watch</a> · {links}</td></tr>'
        )
    return (
        f'<tr><td><a class=watch href="{escape(entry.watch_url)}">{name}</a></td>'
        f"<td>{escape(', '.join(entry.codecs))}</td><td>{size}</td>"
        f"<td class=num>{_duration(entry.duration)}</td><td>{kind}</td><td class=num>{entry.viewers}</td>"
        f'<td class=links><a class=watch href="{escape(entry.watch_url)}">watch</a> · {links} · '
        f'<a href="{escape(entry.file_url)}">download</a></td></tr>'
    )


def index_page(entries: list[PathEntry], *, page: int, more: bool) -> str:
    rows = "\n".join(_row(e) for e in entries) or "<tr><td colspan=7>nothing to serve yet</td></tr>"
    nav = []
    if page > 0:
        nav.append(f'<a href="/?page={page - 1}">previous</a>')
    if more:
        nav.append(f'<a href="/?page={page + 1}">next</a>')
    body = (
        f"<h1>streamd <small>{len(entries)} path{'s' if len(entries) != 1 else ''}</small></h1>\n"
        "<table><thead><tr><th>path</th><th>codecs</th><th>resolution</th><th>duration</th>"
        "<th>kind</th><th>viewers</th><th>links</th></tr></thead><tbody>\n"
        f"{rows}\n</tbody></table>\n" + (f"<p>{' · '.join(nav)}</p>" if nav else "")
    )
    return _page("streamd", body)


# codec strings (RFC 6381 prefixes) of video not every browser decodes, and how users call them
CONVERTIBLE = {"hvc1": "HEVC (H.265)", "hev1": "HEVC (H.265)", "av01": "AV1", "vp09": "VP9"}

# Ask the browser about the file's codec string; play the H.264 copy when it cannot decode it, or
# when it drops the video track anyway (no picture once the metadata is in).
_CHOOSE = (
    "const v=document.getElementById('player'),s=document.getElementById('status'),d=v.dataset;"
    "const type='video/mp4; codecs=\"'+d.codec+'\"';"
    "const ok=v.canPlayType(type)!==''||!!(window.MediaSource&&MediaSource.isTypeSupported(type));"
    "function convert(){if(v.src.endsWith(d.converted))return;"
    "s.textContent='This browser cannot play '+d.name+' video: playing a copy converted to H.264 "
    "by the server.';s.className='note';v.src=d.converted}"
    "if(ok){v.src=d.original;v.addEventListener('loadedmetadata',()=>{if(!v.videoWidth)convert()})}"
    "else convert();"
)


# Native HLS where the browser has it (Safari, iOS, Chromium 14x+): the whole timeline at once and
# seeks without a new remux; the MP4 stream stays the fallback (no script, no native HLS, an error,
# or a video codec the browser lacks, which the script above converts).
_HLS = (
    "const v=document.getElementById('player'),s=document.getElementById('status'),"
    "a=document.getElementById('hls');"
    "if(a&&a.dataset.play&&v.canPlayType('application/vnd.apple.mpegurl')!==''&&"
    "!(v.dataset.converted&&v.src.endsWith(v.dataset.converted))){"
    "const mp4=v.src,start=+a.dataset.start;v.src=a.href;"
    "if(start)v.addEventListener('loadedmetadata',()=>{v.currentTime=start},{once:true});"
    "v.addEventListener('error',()=>{if(v.src!==a.href)return;"
    "s.textContent='HLS did not play here: playing the MP4 stream';s.className='note';"
    "v.src=mp4})}"  # the MP4 URL starts at ?start= already
)


def _hls_line(entry: PathEntry, start: float) -> str:
    """The playlist to copy into other players; the player page plays it itself where it can."""
    if not entry.hls_url:
        return ""
    url = escape(entry.hls_url)
    play = " data-play=1" if entry.file_url else ""  # live paths: the MP4 stream until LL-HLS plays
    return (
        f'<p>HLS: <a id=hls href="{url}"{play} data-start="{start:g}">{url}</a> '
        "for VLC, ffplay, Safari, iOS and smart TVs "
        f'(<a href="{url}?format=ts">MPEG-TS</a> for older players)</p>\n'
    )


def watch_page(entry: PathEntry, start: float) -> str:
    name = escape(entry.name)
    src = f"/mp4/{quote(entry.name)}"
    if entry.file_url:  # a file: start anywhere, download the original
        src += f"?start={start:g}" if start else ""
        seek = (
            "<form method=get><label>start at <input name=start type=number min=0 step=any "
            f'value="{start:g}" style="width:6rem"> s</label> <button>go</button></form>\n'
        )
        original = f' · <a href="{escape(entry.file_url)}">original file</a>'
    else:  # being published: from the live edge, as long as it lasts
        seek, original = "<p><span class=live>live</span></p>\n", ""
    video = f'<video id=player controls autoplay muted playsinline src="{escape(src)}"></video>\n'
    choose = ""
    label = CONVERTIBLE.get(entry.video_codec.split(".")[0])
    if label and entry.file_url:  # the browser decides; the converted copy plays without script
        converted = src + ("&" if "?" in src else "?") + "video=h264"
        video = (
            f'<video id=player controls autoplay muted playsinline data-codec="{escape(entry.video_codec)}" '
            f'data-name="{escape(label)}" data-original="{escape(src)}" data-converted="{escape(converted)}">'
            "</video>\n"
            f'<noscript><video controls muted playsinline src="{escape(converted)}"></video></noscript>\n'
        )
        choose = f"<script>(()=>{{{_CHOOSE}}})()</script>"
    body = (
        f'<h1><a href="/">streamd</a> · {name}</h1>\n'
        f"{video}"
        f"{seek}"
        f'<p>RTSP: <code>{escape(entry.rtsp_url)}</code> · <a href="{escape(entry.sdp_url)}">SDP</a>'
        f"{original}</p>\n"
        f"{_hls_line(entry, start)}"
        "<p id=status></p>\n"
        "<script>const v=document.getElementById('player');v.addEventListener('error',()=>{"
        "document.getElementById('status').textContent='cannot play: '+(v.error&&v.error.message||'error')})"
        f"</script>{choose}"
        f"<script>(()=>{{{_HLS}}})()</script>"
        # WebRTC (streamd/webrtc/watch.js): takes over the player once connected, else fMP4 goes on
        f'<script src="/webrtc/watch.js" data-whep="/whep/{escape(quote(entry.name))}"'
        f"{' data-file=1' if entry.file_url else ''}></script>"
    )
    return _page(f"{entry.name} · streamd", body)
