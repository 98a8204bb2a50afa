"""Accessibility check of a page open in a real browser, with axe-core.

axe-core (package.json, pinned; `npm ci` in scripts/runtests.py installs it) runs inside the page
that Playwright has open. `assert_accessible(page)` fails on any violation axe rates `serious` or
`critical` and prints each one readably (rule, impact, help, the offending elements). Usage:

    from tests.a11y import assert_accessible
    page.goto(server.url + "/login")
    assert_accessible(page)

The script is evaluated through the DevTools protocol, so the page's Content-Security-Policy
(script-src 'self', no inline scripts) is neither relaxed nor in the way. The page's context must
have JavaScript on (axe is a script); check a JavaScript-off context's pages in another context.
Without node_modules/axe-core the calling test is skipped, saying why (as with Chromium).
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest

from tests.live import ROOT

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
FAILING_IMPACTS = ("serious", "critical")
# WCAG 2.0/2.1/2.2 A and AA plus axe's best practices; every rule axe has for those tags.
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]


@cache
def axe_source() -> str:
    if not AXE.exists():
        pytest.skip(
            f"no {AXE.relative_to(ROOT)}: run `npm ci` (scripts/runtests.py does) to install "
            "axe-core for the accessibility checks"
        )
    return AXE.read_text()


def axe_run(page: Any) -> dict[str, Any]:
    """axe's full result for the page as it is now (injecting axe once per document)."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(axe_source() + "\n;undefined")
    return page.evaluate(
        "(tags) => axe.run(document, "
        "{runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})",
        TAGS,
    )


def describe(violations: list[dict[str, Any]]) -> str:
    lines = []
    for violation in violations:
        impact, rule = violation["impact"], violation["id"]
        lines.append(f"[{impact}] {rule}: {violation['help']} ({violation['helpUrl']})")
        for node in violation["nodes"]:
            target = " ".join(map(json.dumps, node["target"]))
            lines.append(f"    at {target}: {node['html'][:200]}")
            summary = node.get("failureSummary", "").replace("\n", "\n      ")
            if summary:
                lines.append(f"      {summary}")
    return "\n".join(lines)


def serious_violations(page: Any) -> list[dict[str, Any]]:
    return [v for v in axe_run(page)["violations"] if v["impact"] in FAILING_IMPACTS]


def assert_accessible(page: Any, name: str = "") -> None:
    """Fail if axe finds a serious or critical violation on the page; print them all."""
    violations = serious_violations(page)
    where = name or page.url
    assert not violations, f"axe-core: serious/critical violations on {where}:\n" + describe(
        violations
    )
