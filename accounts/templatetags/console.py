"""Template filters for every customer page: sizes, times and statuses in words, never Python's spelling.

``{% load console %}``; shared by the account, jobs and billing templates (this is the lowest app, and the
filters know no app's models).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.timesince import timesince

from core.units import human_bytes as _human_bytes

register = template.Library()

JUST_NOW = timedelta(minutes=1)


@register.filter
def human_bytes(size: int | float | None) -> str:
    """``26214400|human_bytes`` -> ``25 MB`` (``core.units.human_bytes``: the API's error messages agree)."""
    return "" if size is None else _human_bytes(size)


@register.filter
def ago(moment: datetime | None) -> str:
    """``"just now"`` under a minute (Django's ``timesince`` would say "0 minutes"), else ``"3 hours ago"``."""
    if moment is None:
        return ""
    if timezone.now() - moment < JUST_NOW:
        return "just now"
    return f"{timesince(moment)} ago"


@register.filter
def words(code: str | None) -> str:
    """A snake_case status as words: ``past_due`` -> ``past due`` (``|capfirst`` for a label)."""
    return (code or "").replace("_", " ")
