#!/usr/bin/env python
"""Django's command-line utility for authserver."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "authserver.settings")
    # Commands (migrate, the purges, key rotation) use the AUTHSERVER_DB_COMMAND_* timeouts;
    # the development server serves requests, so it keeps the serving ones (settings.py).
    if len(sys.argv) > 1 and sys.argv[1] != "runserver":
        os.environ["_AUTHSERVER_MANAGEMENT_COMMAND"] = "1"
    from django.core.management import execute_from_command_line

    from authserver.startup import exit_on_database_error

    with exit_on_database_error():
        execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
