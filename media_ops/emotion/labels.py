"""The nine emotion names every result uses, and the mapping from a model's own labels onto them.

Why this module exists: emotion2vec+ checkpoints label their classes bilingually (``中文/english``) and in
their own order; results, the API and the dashboard use ``LABELS`` only, so the mapping is defined once.
"""

from __future__ import annotations

LABELS: tuple[str, ...] = (
    "angry",
    "disgusted",
    "fearful",
    "happy",
    "neutral",
    "other",
    "sad",
    "surprised",
    "unknown",
)


def parse_label(raw: str) -> str:
    """Map a raw model label to one of ``LABELS``: ``"开心/happy"`` → ``"happy"``, ``"<unk>"`` → ``unknown``.

    emotion2vec+ labels are bilingual ``中文/english``; the English part is the stable name.
    """
    text = raw.strip()
    if text in ("<unk>", "unk", "unknown"):
        return "unknown"
    name = text.rsplit("/", 1)[-1].strip().lower()
    if name not in LABELS:
        raise ValueError(
            f"unknown emotion label {raw!r}; expected one of {LABELS} (optionally as 中文/english)"
        )
    return name
