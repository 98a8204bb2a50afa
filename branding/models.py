from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from branding import values


def validate_color(value: str) -> None:
    if values.color_problem(value):
        raise ValidationError(
            "Enter a colour as #rgb or #rrggbb, e.g. #1d4ed8 (got %(value)s).",
            params={"value": value},
            code="invalid_color",
        )


def validate_logo_url(value: str) -> None:
    problem = values.logo_url_problem(
        value,
        static_url=values.static_prefix(settings.STATIC_URL),
        allow_http=not settings.PRODUCTION,
    )
    if problem:
        raise ValidationError("The logo URL %(problem)s.", params={"problem": problem})


def validate_name(value: str) -> None:
    if problem := values.name_problem(value):
        raise ValidationError("The name %(problem)s.", params={"problem": problem})


class Brand(models.Model):
    """The one row (pk 1) of branding set in the admin. An empty field falls back to the
    AUTHSERVER_BRAND_* setting; read through branding.selectors.brand_get (cached)."""

    SINGLETON_PK = 1

    name = models.CharField(
        max_length=values.NAME_MAX_LENGTH,
        blank=True,
        validators=[validate_name],
        help_text="Product name on every page, email and the admin. Empty: AUTHSERVER_BRAND_NAME.",
    )
    logo_url = models.CharField(
        "logo URL",
        max_length=values.LOGO_URL_MAX_LENGTH,
        blank=True,
        validators=[validate_logo_url],
        help_text="An https:// URL or a path under the static files (e.g. /static/logo.svg). "
        "Empty: AUTHSERVER_BRAND_LOGO_URL, or the built-in mark.",
    )
    primary_color = models.CharField(
        max_length=7,
        blank=True,
        validators=[validate_color],
        help_text="#rgb or #rrggbb: primary buttons, links and the admin header. "
        "Empty: AUTHSERVER_BRAND_PRIMARY_COLOR.",
    )
    primary_color_dark = models.CharField(
        "primary colour (dark scheme)",
        max_length=7,
        blank=True,
        validators=[validate_color],
        help_text="The primary colour when the browser prefers a dark scheme. "
        "Empty: AUTHSERVER_BRAND_PRIMARY_COLOR_DARK, else the primary colour.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "brand"
        verbose_name_plural = "brand"

    def __str__(self) -> str:
        return "Branding"
