"""Every hosted page is built on the branded frame and none hard-codes the product name: a new
page that says "authserver" in its text, or skips templates/authserver/base.html, fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.live import ROOT

FRAMES = ('"authserver/base.html"', '"selfservice/base.html"')
# Pieces included into a page rather than pages of their own (besides the _*.html ones).
INCLUDED = {"email_change.html"}
PAGES = sorted(
    path
    for folder in ("templates/accounts", "templates/selfservice", "oauth/templates/oauth")
    for path in (ROOT / folder).glob("*.html")
    if not path.name.startswith("_") and path.name not in INCLUDED
) + [ROOT / "templates" / name for name in ("403_csrf.html", "404.html", "500.html")]
_TAGS = re.compile(r"\{%\s*comment\s*%\}.*?\{%\s*endcomment\s*%\}|\{[%{#].*?[%}#]\}", re.S)


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_hosted_page_uses_the_branded_frame_and_names_no_product(path: Path):
    source = path.read_text()
    extends = re.search(r"\{%\s*extends\s+(\"[^\"]+\")\s*%\}", source)
    assert extends and extends.group(1) in FRAMES, "must extend the branded frame"
    text = _TAGS.sub("", source)
    assert "authserver" not in text.lower(), "say {{ brand.name }}, not authserver"
