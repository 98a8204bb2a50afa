"""Date formats of the hosted pages per language (FORMAT_MODULE_PATH; Django's own formats for
the rest). The account pages show a moment as DATETIME_FORMAT, in UTC, with the zone named."""
