"""The generated /brand.css: the brand colours as the CSS custom properties of the hosted pages
(authserver/site.css) and of Django's admin (admin/css/base.css), light and dark.

A stylesheet from our own origin, so the pages' `style-src 'self'` holds and no inline style is
needed. Every colour is checked again here (values.color_problem) whatever its source, and one
that fails is left out: nothing but `#` and hex digits ever reaches the CSS.

Contrast: text on a brand-coloured button is white or near-black, whichever reads better
(values.text_on). Links and accent text use the brand colour only where it reaches 4.5:1 on the
page's backgrounds; otherwise they keep the built-in colour, so a pale brand never makes text
unreadable.
"""

from __future__ import annotations

from branding import values
from branding.selectors import BrandValues

# The backgrounds text sits on in authserver/site.css (--surface, --bg, --accent-soft).
LIGHT_BACKGROUNDS = ("#ffffff", "#eef1f7", "#eff4ff")
DARK_BACKGROUNDS = ("#151d2e", "#0b1220", "#1b2a4a")
# Django admin's light and dark body backgrounds.
ADMIN_LIGHT_BACKGROUNDS = ("#ffffff", "#f8f8f8")
ADMIN_DARK_BACKGROUNDS = ("#121212", "#212121")


def _clean(color: str) -> str | None:
    return color.lower() if color and values.color_problem(color) is None else None


def _declarations(props: dict[str, str]) -> str:
    return "".join(f"  {name}: {value};\n" for name, value in props.items())


# The built-in accent / link colours in the dark scheme, set again when a brand's dark colour is
# too pale to be text there: otherwise the light rule's value would show through.
SITE_DARK_DEFAULTS = {"--accent": "#2f6bf0", "--accent-hover": "#4a80f5"}
ADMIN_DARK_DEFAULTS = {"--link-fg": "#81d4fa", "--link-hover-color": "#4ac1f7"}


def _site_props(primary: str, backgrounds: tuple[str, ...]) -> dict[str, str]:
    props = {
        "--brand-primary": primary,
        "--brand-primary-text": values.text_on(primary),
        "--brand-primary-hover": values.hover_of(primary),
    }
    if values.readable_on(primary, backgrounds):
        props["--accent"] = primary
        props["--accent-hover"] = values.hover_of(primary)
    return props


def _admin_props(primary: str, backgrounds: tuple[str, ...]) -> dict[str, str]:
    text = values.text_on(primary)
    deeper = values.hover_of(primary)
    props = {
        "--primary": primary,
        "--primary-fg": text,
        "--secondary": deeper,
        "--header-bg": deeper,
        "--header-color": values.text_on(deeper),
        "--header-branding-color": values.text_on(deeper),
        "--header-link-color": values.text_on(deeper),
        "--breadcrumbs-bg": primary,
        "--breadcrumbs-fg": text,
        "--breadcrumbs-link-fg": text,
        "--button-bg": primary,
        "--button-fg": text,
        "--button-hover-bg": deeper,
        "--default-button-bg": deeper,
        "--default-button-hover-bg": values.hover_of(deeper),
    }
    if values.readable_on(primary, backgrounds):
        props["--link-fg"] = primary
        props["--link-hover-color"] = deeper if values.readable_on(deeper, backgrounds) else primary
    return props


def brand_stylesheet(brand: BrandValues) -> str:
    light = _clean(brand.primary_color)
    dark = _clean(brand.primary_color_dark) or light
    out = ['/* authserver brand colours (generated; README "Branding") */\n']
    if light:
        props = _site_props(light, LIGHT_BACKGROUNDS) | _admin_props(light, ADMIN_LIGHT_BACKGROUNDS)
        out.append(f'html[data-theme="light"], :root {{\n{_declarations(props)}}}\n')
    if dark:
        props = (
            SITE_DARK_DEFAULTS
            | ADMIN_DARK_DEFAULTS
            | _site_props(dark, DARK_BACKGROUNDS)
            | _admin_props(dark, ADMIN_DARK_BACKGROUNDS)
        )
        body = _declarations(props)
        out.append(f"@media (prefers-color-scheme: dark) {{\n:root {{\n{body}}}\n}}\n")
        out.append(f'html[data-theme="dark"] {{\n{body}}}\n')
    if light or dark:
        out.append(
            ".btn-primary { background: var(--brand-primary); color: var(--brand-primary-text); }\n"
            ".btn-primary:hover { background: var(--brand-primary-hover); }\n"
            # The admin paints its header name in --accent, which is the hosted pages' link
            # colour here: use the text colour computed for the header instead.
            "#site-name a:link, #site-name a:visited { color: var(--header-branding-color); }\n"
        )
    return "".join(out)
