"""The accessibility check (tests/a11y.py) itself: it must fail on a page with serious faults,
or a green browser test would prove nothing."""

from __future__ import annotations

import pytest

from tests.a11y import assert_accessible
from tests.browser import chromium

BAD_PAGE = (
    "<html><head><title>bad</title></head><body><main>"
    '<form><input type="text" name="q"></form>'
    '<p style="color:#ccc;background:#fff">faint text</p>'
    "</main></body></html>"
)
GOOD_PAGE = (
    '<html lang="en"><head><title>good</title></head><body><main><h1>Search</h1>'
    '<form><label for="q">Query</label><input id="q" type="text" name="q"></form>'
    "</main></body></html>"
)


def test_axe_check_fails_on_serious_violations_and_passes_a_clean_page():
    with chromium() as browser:
        page = browser.new_page()
        page.set_content(BAD_PAGE)
        with pytest.raises(AssertionError) as failure:
            assert_accessible(page, "bad page")
        message = str(failure.value)
        assert "[critical] label" in message
        assert "[serious] color-contrast" in message
        assert "[serious] html-has-lang" in message
        page.set_content(GOOD_PAGE)
        assert_accessible(page, "good page")
