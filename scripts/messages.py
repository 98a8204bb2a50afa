#!/usr/bin/env python3
"""`make messages`: update every catalog under locale/ from the code and templates
(`makemessages`), then compile them (`compilemessages`). Needs GNU gettext (xgettext, msgmerge,
msgfmt). The German catalog must then have no untranslated, fuzzy or obsolete entry
(tests/i18n/test_catalog.py checks it); docs: Reference > Languages.

The same options serve the test, which runs makemessages on a copy of the tree
(`makemessages_run`), so what is extracted cannot drift between the two.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Never extracted: third-party code, tests, benchmarks, the built docs site, the examples.
IGNORE = [".venv/*", "node_modules/*", "tests/*", "bench/*", "docs/*", "site/*", "examples/*"]
MAKEMESSAGES_OPTIONS = [
    "--no-obsolete",
    "--add-location=file",
    *(f"--ignore={pattern}" for pattern in IGNORE),
]


def makemessages_run(*, source_root: Path, python: str = sys.executable) -> None:
    """Run makemessages for every language with `source_root` as the tree to read and write
    (its own locale/ folder); the settings come from this checkout."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "authserver.settings"),
        "PYTHONPATH": str(ROOT),
    }
    code = (
        "import django, sys\n"
        "django.setup()\n"
        "from django.conf import settings\n"
        "from django.core.management import call_command\n"
        # Only the copy's own locale/ (found in the working directory) is written.
        "settings.LOCALE_PATHS = []\n"
        "call_command('makemessages', *sys.argv[1:], verbosity=0)\n"
    )
    args = [f"--locale={code}" for code in _languages_in_subprocess(env, python)]
    subprocess.run(
        [python, "-c", code, *args, *MAKEMESSAGES_OPTIONS], cwd=source_root, env=env, check=True
    )


def _languages_in_subprocess(env: dict[str, str], python: str) -> list[str]:
    out = subprocess.run(
        [
            python,
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "print(' '.join(c for c, _ in settings.LANGUAGES if c != 'en'))",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


def main() -> int:
    makemessages_run(source_root=ROOT)
    subprocess.run(
        [sys.executable, "manage.py", "compilemessages", "--ignore=.venv", "--ignore=node_modules"],
        cwd=ROOT,
        check=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
