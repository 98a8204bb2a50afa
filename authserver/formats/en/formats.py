# "6 Dec 2026, 04:30 UTC": day first, as in the rest of the English-speaking world but the US,
# and unambiguous (the month is a word).
DATETIME_FORMAT = "j M Y, H:i e"
