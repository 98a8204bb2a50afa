from django.apps import AppConfig


class BrandingConfig(AppConfig):
    """The product name, logo and colours on hosted pages, emails and the admin (README
    "Branding"): settings, overridden by one Brand row that superusers edit in the admin."""

    name = "branding"
    verbose_name = "Branding"
