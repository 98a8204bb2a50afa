"""The brand in emails: the name, a button colour with readable text, a link colour and an
absolute logo URL. Email clients ignore stylesheets, so these go into inline styles; each is a
validated colour or URL (branding.values), and Django's autoescaping covers the HTML part."""

from __future__ import annotations

from django.conf import settings

from branding import values
from branding.selectors import brand_get

DEFAULT_BUTTON = "#0b5cad"
DEFAULT_LINK = "#0b5cad"
EMAIL_BACKGROUNDS = ("#ffffff",)


def brand_email_context() -> dict[str, str]:
    brand = brand_get()
    color = brand.primary_color if brand.primary_color else ""
    if not color or values.color_problem(color):
        color = DEFAULT_BUTTON
    logo = brand.logo_url
    if logo and not logo.startswith(("https://", "http://")):
        # A path under our static files: absolute, on the issuer's address.
        logo = settings.AUTHSERVER_ISSUER.rstrip("/") + logo
    return {
        "site_name": brand.name,
        "brand_name": brand.name,
        "brand_color": color,
        "brand_text_color": values.text_on(color),
        "brand_link_color": color if values.readable_on(color, EMAIL_BACKGROUNDS) else DEFAULT_LINK,
        "brand_logo_url": logo,
    }
