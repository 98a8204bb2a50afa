#!/usr/bin/env python
"""The downstream example API's manage.py (run from this folder)."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "downstream.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
