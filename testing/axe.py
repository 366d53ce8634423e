"""Accessibility checks in the browser tests: axe-core (vendored, ``testing/vendor/axe-core``, no network)
run inside a Playwright page, failing on any *serious* or *critical* violation of WCAG 2 A/AA.

The script goes in through ``page.evaluate`` (the DevTools protocol), not a ``<script>`` tag: the pages'
Content-Security-Policy refuses inline scripts, and the tests must keep that policy on while they run.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

AXE_VERSION = "4.14.1"
AXE_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"
AXE_PATH = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
BLOCKING_IMPACTS = ("serious", "critical")
# WCAG 2.0/2.1 A and AA, the bar the issue sets; axe's "best-practice" rules are advice, not failures.
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]

RUN_AXE = """async (tags) => {
  const results = await axe.run(document, { runOnly: { type: "tag", values: tags }, resultTypes: ["violations"] });
  return results.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map((n) => ({ target: n.target.join(" "), summary: n.failureSummary })),
  }));
}"""


@functools.cache
def axe_source() -> str:
    source = AXE_PATH.read_text(encoding="utf-8")
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()
    if digest != AXE_SHA256:
        raise AssertionError(f"{AXE_PATH} is not axe-core {AXE_VERSION} as vendored (sha256 {digest})")
    return source


def violations(page) -> list[dict]:
    """axe's WCAG 2 A/AA violations on the page as it is now, serious and critical only."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(axe_source() + "\n;undefined")
    found = page.evaluate(RUN_AXE, TAGS)
    return [v for v in found if v["impact"] in BLOCKING_IMPACTS]


def assert_accessible(page, where: str = "") -> None:
    """Fail with a readable list (rule, impact, the first elements) when axe finds a blocking violation."""
    found = violations(page)
    if found:
        lines = [f"{v['impact']} {v['id']}: {v['help']}\n" + "\n".join(
            f"    {n['target']}: {n['summary']}" for n in v["nodes"]) for v in found]
        raise AssertionError(f"axe-core on {where or page.url}:\n" + "\n".join(lines))
