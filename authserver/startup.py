"""Start-up failures reported as one readable line instead of a traceback.

Misconfiguration is the operator's problem to fix, so the process says which variable is wrong
and exits. Nothing here reads the environment: settings.py does that and calls `config_fail`.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import NoReturn

CONFIG_EXIT_CODE = 2


def config_fail(variable: str, problem: str) -> NoReturn:
    """Refuse to start: print one line naming the variable, exit non-zero."""
    sys.stderr.write(f"authserver: configuration error: {variable} {problem}\n")
    raise SystemExit(CONFIG_EXIT_CODE)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


@contextlib.contextmanager
def exit_on_database_error() -> Iterator[None]:
    """Turn 'database unreachable' in a management command into one line naming DATABASE_URL."""
    from django.db.utils import OperationalError

    try:
        yield
    except OperationalError as exc:
        sys.stderr.write(
            "authserver: cannot use the database named by DATABASE_URL: " + _first_line(exc) + "\n"
        )
        raise SystemExit(1) from None
