"""HLS (RFC 8216) for every path: on-demand files as VOD playlists, live paths as LL-HLS.

URL layout (``<path>`` is the media path, as in ``/mp4/<path>``; it may contain slashes):

``/hls/<path>/index.m3u8``
    The multivariant playlist. For a file: one variant (video and its audio track, muxed); with
    several audio tracks the variant is video only and each track an ``#EXT-X-MEDIA:TYPE=AUDIO``
    rendition with its LANGUAGE. ``?format=ts``: the same pointing at the MPEG-TS media
    playlists, for players without fMP4 support.
``/hls/<path>/<rendition>/media.m3u8``
    A media playlist of CMAF fragmented-MP4 segments with an ``#EXT-X-MAP`` init segment.
    ``<rendition>`` is ``main`` (the variant: video, with its audio unless the file has several
    audio tracks; audio only for audio files) or ``a<N>`` (the audio track with stream index N
    alone). Segment URLs in playlists carry ``?v=<file version>``.
``/hls/<path>/<rendition>/init.mp4``
    The init segment (``ftyp`` + ``moov``) of the rendition.
``/hls/<path>/<rendition>/<n>.m4s``
    Segment ``n`` (0-based): ``moof`` + ``mdat`` with the source's own timestamps, so segments
    concatenate seamlessly.
``/hls/<path>/<rendition>/ts.m3u8`` and ``/hls/<path>/<rendition>/<n>.ts``
    The MPEG-TS variant of the same segments (same boundaries).

Live paths use the same multivariant and media playlist names; their parts and blocking reloads
(``_HLS_msn``, ``_HLS_part``, ``_HLS_skip``) are answered by :mod:`streamd.hls.live_routes`.

Every route is a ``read`` of ``<path>`` for the Authorizer (streamd/http/access.py); a ``?jwt=``
token in a playlist's URL is carried into the URLs it lists.
"""
