"""Compact cell values for the admin's wide lists (sessions, signing keys), so a list fits a
1280 px window beside the admin's navigation and filter panels without scrolling sideways."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone
from django.utils.dateformat import format as date_format

EMPTY = "\u2014"  # an em dash, as the admin shows empty values


def compact_time(value: datetime | None) -> str:
    """ "5 Dec 2026 21:31" in the server's time zone; the em dash when there is none."""
    if value is None:
        return EMPTY
    return date_format(timezone.localtime(value), "j M Y H:i")


def shortened(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 1] + "\u2026"
