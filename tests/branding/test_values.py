"""The branding rules (branding/values.py) and the generated /brand.css (branding/stylesheet.py):
what a colour or logo URL may be, readable text on any brand colour, and CSS that a value can
never break out of."""

from __future__ import annotations

import re

import pytest

from branding import values
from branding.selectors import BrandValues
from branding.stylesheet import brand_stylesheet

STATIC = "/static/"


@pytest.mark.parametrize("good", ["#abc", "#ABC", "#1d4ed8", "#FFD400"])
def test_hex_colours_are_accepted(good):
    assert values.color_problem(good) is None


@pytest.mark.parametrize(
    "bad",
    ["1d4ed8", "#1d4ed", "#1d4ed8ff", "red", "rgb(0,0,0)", "#abc;}", "#abc\n", "", "#ggg"],
)
def test_anything_else_is_not_a_colour(bad):
    assert "#rgb or #rrggbb" in values.color_problem(bad)


@pytest.mark.parametrize(
    "good",
    [
        "https://cdn.example.com/logo.svg",
        "https://example.com:8443/a/b.png?v=2",
        "/static/logo.png",
    ],
)
def test_https_and_static_logo_urls_are_accepted(good):
    assert values.logo_url_problem(good, static_url=STATIC, allow_http=False) is None


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("javascript:alert(1)", "https://"),
        ("data:image/png;base64,iVBORw0KGgo=", "https://"),
        ("http://example.com/logo.png", "http: is refused in production"),
        ("//evil.example/logo.png", "https://"),
        ("/media/logo.png", "https://"),
        ("/static/../secret", "no '..'"),
        ('https://example.com/a"onerror="x', "quotes"),
        ("https://example.com/a b.png", "spaces"),
        ("https://user:pw@example.com/logo.png", "user name or password"),
        ("https:///nohost.png", "https://"),
        ("ftp://example.com/logo.png", "https://"),
        ("https://example.com/" + "a" * 600, "at most"),
    ],
)
def test_unsafe_logo_urls_are_refused(bad, says):
    problem = values.logo_url_problem(bad, static_url=STATIC, allow_http=False)
    assert problem is not None and says in problem


def test_http_logo_is_allowed_outside_production_only():
    url = "http://127.0.0.1:8000/logo.png"
    assert values.logo_url_problem(url, static_url=STATIC, allow_http=True) is None
    assert values.logo_url_problem(url, static_url=STATIC, allow_http=False) is not None


def test_name_must_be_one_line():
    assert values.name_problem("Acme ID") is None
    assert values.name_problem("Acme\nBcc: x") is not None
    assert values.name_problem("x" * 61) is not None


def test_button_text_reaches_aa_contrast_on_every_colour():
    # A grid over the whole RGB cube: whatever brand colour is chosen, the button's text colour
    # (white or near-black) reads at 4.5:1 or better.
    steps = range(0, 256, 17)
    worst = min(
        values.contrast(values.text_on(c), c)
        for c in (f"#{r:02x}{g:02x}{b:02x}" for r in steps for g in steps for b in steps)
    )
    assert worst >= 4.5
    assert values.text_on("#ffd400") == values.DARK_TEXT  # pale yellow: dark text
    assert values.text_on("#1d4ed8") == values.WHITE  # deep blue: white text


def test_hover_shade_never_lowers_the_text_contrast():
    for color in ("#ffd400", "#1d4ed8", "#7c3aed", "#22c55e", "#777777", "#000000", "#ffffff"):
        text = values.text_on(color)
        assert values.contrast(text, values.hover_of(color)) >= values.contrast(text, color)


def test_stylesheet_sets_site_and_admin_variables_light_and_dark():
    css = brand_stylesheet(BrandValues("Acme", "", "#1d4ed8", "#8ab4ff"))
    light, dark = css.split("@media (prefers-color-scheme: dark)")
    assert "--brand-primary: #1d4ed8;" in light and "--primary: #1d4ed8;" in light
    assert "--accent: #1d4ed8;" in light  # readable on white: links use it too
    assert "--header-bg:" in light and "--link-fg: #1d4ed8;" in light
    assert "--brand-primary: #8ab4ff;" in dark and "--brand-primary-text: #000000;" in dark
    assert 'html[data-theme="dark"]' in dark


def test_pale_brand_keeps_the_readable_link_colour():
    css = brand_stylesheet(BrandValues("Acme", "", "#ffd400", ""))
    light = css.split("@media")[0]
    assert "--brand-primary: #ffd400;" in light and "--brand-primary-text: #000000;" in light
    assert "--accent:" not in light and "--link-fg:" not in light  # yellow text would not read


def test_no_colour_no_rules():
    css = brand_stylesheet(BrandValues("Acme", "", "", ""))
    assert "{" not in css


@pytest.mark.parametrize(
    "hostile",
    ["red;} body{display:none", "#abc}</style><script>alert(1)</script>", "#abc;--x:url(//e)"],
)
def test_a_value_that_is_not_a_colour_never_reaches_the_css(hostile):
    # Values are validated when saved; the stylesheet checks again, so a row written around
    # the validation (SQL, a bug) still cannot inject CSS.
    css = brand_stylesheet(BrandValues("Acme", "", hostile, hostile))
    assert "{" not in css
    assert not re.search(r"script|display|url\(", css)
