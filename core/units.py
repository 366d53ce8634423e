"""Numbers as people read them, shared by messages (API errors) and pages, so both say the same thing.

Sizes use powers of 1024 with the names everybody uses ("MB"), as Django's ``filesizeformat`` and the plan
limits do (a 25 MB plan limit is 26,214,400 bytes): an error saying "27.5 MB; the limit is 25 MB" matches the
"up to 25 MB" on the upload page. ``static/js/app.js`` (``formatBytes``) implements the same rule.
"""

from __future__ import annotations

_UNITS = ("KB", "MB", "GB", "TB")


def human_bytes(size: int | float) -> str:
    """``26214400`` -> ``"25 MB"``, ``28800044`` -> ``"27.5 MB"``, ``900`` -> ``"900 bytes"``: one decimal,
    dropped when it is zero."""
    size = float(size)
    if abs(size) < 1024:
        whole = int(size)
        return f"{whole} byte{'' if whole == 1 else 's'}"
    index = 0
    size /= 1024
    while abs(size) >= 1024 and index < len(_UNITS) - 1:
        size /= 1024
        index += 1
    text = f"{size:.1f}"
    return f"{text[:-2] if text.endswith('.0') else text} {_UNITS[index]}"
