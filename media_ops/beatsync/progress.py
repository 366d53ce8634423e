"""Progress reporting shared by the beat-sync stages: clamped, de-duplicated and scaled per stage.

Why this module exists: ``align``, ``render`` and ``run`` each report progress; ``run`` maps each stage's
own 0-100 onto its share of the job. The helpers live apart from all three so none depends on another just
for them.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, str], None]


def _reporter(progress: Progress | None) -> Callable[[int, str], None]:
    """Clamp percentages and drop repeats, so per-packet reporting doesn't flood the job's callback."""
    last: list[tuple[int, str]] = []

    def report(percent: int, message: str) -> None:
        update = (int(max(0, min(100, percent))), message)
        if progress is not None and (not last or last[-1] != update):
            last[:] = [update]
            progress(*update)

    return report


def _scaled(report: Callable[[int, str], None], lo: int, hi: int) -> Progress:
    """Map a stage's own 0-100 onto [lo, hi] of the job's progress."""
    return lambda percent, message: report(lo + (hi - lo) * percent // 100, message)
