"""PostgreSQL database backend: Django's, with the connection health check spaced out.

Used as `ENGINE = "authserver.db"` (settings.py) when DATABASE_URL is a postgres:// URL.
"""
