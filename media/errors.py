"""Errors of the media layer, each with a reason a person can act on."""


class MediaError(Exception):
    """A file cannot be opened, probed or read. The message says why."""


class UnsupportedMedia(MediaError):
    """A file opens but holds nothing we can stream (e.g. no track with a payload format)."""
