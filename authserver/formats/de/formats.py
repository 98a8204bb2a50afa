# "6. Dezember 2026, 04:30 UTC" (DIN 5008 writes the day with a dot and the month in full).
DATETIME_FORMAT = "j. F Y, H:i e"
