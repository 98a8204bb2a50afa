"""Branding values: the rules for what an operator may set, and the colours derived from them.

Pure functions with no Django import, so authserver/settings.py checks the environment with the
same rules the admin form uses. A value that passes these rules can be written into CSS and HTML
as it is: a colour is `#` and 3 or 6 hex digits, a logo URL holds none of `"'()<>\\`, spaces,
or control characters.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

NAME_MAX_LENGTH = 60
LOGO_URL_MAX_LENGTH = 500
_COLOR = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
# Letters, digits and the URL punctuation that is harmless inside an HTML attribute and a CSS
# url(): no quotes, brackets, backslash, whitespace or control characters.
_URL_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#@!$&*+,;=%]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def color_problem(value: str) -> str | None:
    """None for `#rgb` / `#rrggbb`; else what is wrong, readably."""
    if _COLOR.fullmatch(value):
        return None
    return f"must be a colour written #rgb or #rrggbb (e.g. #1d4ed8), got {value!r}"


def name_problem(value: str) -> str | None:
    if _CONTROL.search(value):
        return "must be one line of text without control characters"
    if len(value) > NAME_MAX_LENGTH:
        return f"must be at most {NAME_MAX_LENGTH} characters"
    return None


def logo_url_problem(value: str, *, static_url: str, allow_http: bool) -> str | None:
    """None for an https: URL (http: too when `allow_http`, i.e. outside production) or a path
    under our static files; else what is wrong. No javascript:, data:, or other scheme: a data:
    image would bypass the pages' img-src policy, and the logo is better served cached."""
    allowed = "an https:// URL or a path under " + static_url
    if len(value) > LOGO_URL_MAX_LENGTH:
        return f"must be at most {LOGO_URL_MAX_LENGTH} characters"
    if not _URL_CHARS.fullmatch(value):
        return f"must be {allowed}, without spaces, quotes, brackets or backslashes"
    if value.startswith(static_url):
        if "//" in value or ".." in value.split("?")[0]:
            return f"must be a plain path under {static_url} (no '..' or '//')"
        return None
    parts = urlsplit(value)
    if parts.scheme == "http" and not allow_http:
        return f"must be {allowed} (http: is refused in production)"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return f"must be {allowed}, got {value!r}"
    if parts.username is not None or parts.password is not None:
        return "must not carry a user name or password"
    return None


def static_prefix(static_url: str) -> str:
    """Django's STATIC_URL ("static/") as the absolute path a logo may start with."""
    return static_url if static_url.startswith(("/", "http")) else "/" + static_url


def logo_origin(value: str) -> str | None:
    """The scheme://host[:port] of an absolute logo URL (for the pages' img-src), else None."""
    parts = urlsplit(value)
    if parts.scheme in ("https", "http") and parts.hostname:
        return f"{parts.scheme}://{parts.netloc}"
    return None


# --- Colour arithmetic (WCAG 2.x relative luminance and contrast ratio) --------------------------


def rgb(color: str) -> tuple[int, int, int]:
    digits = color[1:]
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def hex_color(value: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{round(max(0, min(255, c))):02x}" for c in value)


def luminance(color: str) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb(color))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


WHITE = "#ffffff"
DARK_TEXT = "#000000"


def text_on(background: str) -> str:
    """White or black text, whichever reads better on `background`: the higher contrast is at
    least 4.58:1 for any colour (the worst case is a mid grey), so always WCAG AA."""
    return WHITE if contrast(WHITE, background) >= contrast(DARK_TEXT, background) else DARK_TEXT


def mix(color: str, toward: str, amount: float) -> str:
    a, b = rgb(color), rgb(toward)
    return hex_color(tuple(x + (y - x) * amount for x, y in zip(a, b, strict=True)))


def hover_of(background: str) -> str:
    """A hover shade that moves away from the text colour, so text contrast only grows."""
    return mix(background, "#000000" if text_on(background) == WHITE else WHITE, 0.18)


def readable_on(color: str, backgrounds: tuple[str, ...], minimum: float = 4.5) -> bool:
    return all(contrast(color, bg) >= minimum for bg in backgrounds)
