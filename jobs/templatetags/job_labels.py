"""Job kinds by the names ``jobs.kinds`` gives them, for any template (billing's usage table too).

Billing's code may not import jobs (the layers in pyproject.toml); its templates may load this library, so
a page never shows ``watermark_embed`` where a customer expects "Watermark embed".
"""

from __future__ import annotations

from django import template

from jobs.models import JobKind

register = template.Library()


@register.filter
def kind_label(kind: str) -> str:
    """``"watermark_embed"`` -> ``"Watermark embed"``; an unknown value is shown as it is."""
    try:
        return JobKind(kind).label
    except ValueError:
        return kind
