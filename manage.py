#!/usr/bin/env python
"""Django's command-line utility for authserver."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "authserver.settings")
    from django.core.management import execute_from_command_line

    from authserver.startup import exit_on_database_error

    with exit_on_database_error():
        execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
