"""`manage.py create_user`: password from stdin or an environment variable, never from argv."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import CommandError, call_command

from accounts.models import User

pytestmark = pytest.mark.django_db

GOOD = "a long and unusual passphrase"


def run(*args: str, stdin: str = "", monkeypatch=None) -> str:
    out = io.StringIO()
    if monkeypatch is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    call_command("create_user", *args, stdout=out)
    return out.getvalue()


def test_reads_password_from_stdin(monkeypatch):
    output = run(
        "alice", "--email", "alice@example.com", stdin=GOOD + "\n", monkeypatch=monkeypatch
    )
    user = User.objects.get(username="alice")
    assert user.check_password(GOOD)
    assert str(user.public_id) in output
    assert GOOD not in output


def test_reads_password_from_named_environment_variable(monkeypatch):
    monkeypatch.setenv("NEW_USER_PASSWORD", GOOD)
    run("bob", "--email", "bob@example.com", "--password-env", "NEW_USER_PASSWORD")
    assert User.objects.get(username="bob").check_password(GOOD)


def test_superuser_flag_makes_staff_superuser(monkeypatch):
    run("root", "--email", "root@example.com", "--superuser", stdin=GOOD, monkeypatch=monkeypatch)
    user = User.objects.get(username="root")
    assert user.is_staff and user.is_superuser


def test_password_is_not_accepted_as_an_argument(monkeypatch):
    with pytest.raises(CommandError):
        run("mallory", "--email", "m@example.com", "--password", GOOD)
    assert not User.objects.filter(username="mallory").exists()


def test_weak_password_is_rejected_by_the_validators(monkeypatch):
    with pytest.raises(CommandError, match="password rejected"):
        run("weak", "--email", "weak@example.com", stdin="12345678\n", monkeypatch=monkeypatch)
    assert not User.objects.filter(username="weak").exists()


def test_missing_environment_variable_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("NOPE", raising=False)
    with pytest.raises(CommandError, match="NOPE"):
        run("carol", "--email", "carol@example.com", "--password-env", "NOPE")


def test_duplicate_email_in_other_case_is_rejected(monkeypatch):
    run("dave", "--email", "dave@example.com", stdin=GOOD, monkeypatch=monkeypatch)
    with pytest.raises(CommandError, match="email already exists"):
        run("dave2", "--email", "DAVE@example.com", stdin=GOOD, monkeypatch=monkeypatch)


def test_empty_stdin_is_a_clear_error(monkeypatch):
    with pytest.raises(CommandError, match="standard input"):
        run("erin", "--email", "erin@example.com", stdin="", monkeypatch=monkeypatch)


def test_command_line_run_reads_stdin_and_exits_cleanly(child_env):
    from tests.live import manage

    result = manage(
        "create_user", "frank", "--email", "frank@example.com", env=child_env, stdin=GOOD + "\n"
    )
    assert result.returncode == 0, result.stderr
    assert "created user frank" in result.stdout
    bad = manage("create_user", "frank", "--email", "x@example.com", env=child_env, stdin=GOOD)
    assert bad.returncode != 0
    assert "already exists" in bad.stderr
    assert "Traceback" not in bad.stderr


def _at_the_prompt(env: dict, keys: bytes) -> tuple[int, str]:
    """Run create_user on a real terminal (a pty: getpass reads /dev/tty), press `keys` at the
    first password prompt; the exit status and everything the terminal showed."""
    import os
    import pty
    import select
    import sys
    import time

    from tests.live import ROOT

    pid, fd = pty.fork()
    if pid == 0:  # the child: its controlling terminal is the pty
        os.chdir(ROOT)
        os.execve(  # noqa: S606 - our own manage.py, fixed arguments
            sys.executable,
            [sys.executable, "manage.py", "create_user", "gina", "--email", "g@example.com"],
            env,
        )
    shown = b""
    sent = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        if not sent and b"Password: " in shown:
            os.write(fd, keys)
            sent = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", shown.decode(errors="replace"))  # colours
    return os.waitstatus_to_exitcode(status), plain


@pytest.mark.parametrize(
    ("keys", "message"),
    [(b"\x04", "no password given (input ended)"), (b"\x03", "cancelled")],
)
def test_ctrl_d_or_ctrl_c_at_the_prompt_is_one_line(child_env, keys, message):
    from django.contrib.auth import get_user_model

    code, shown = _at_the_prompt(child_env, keys)
    assert code != 0
    assert "Traceback" not in shown and "EOFError" not in shown, shown
    assert f"CommandError: {message}" in shown, shown
    lines = [line for line in shown.replace("\r", "").split("\n") if line.strip()]
    assert lines[-1].strip().endswith("no user created"), shown
    assert not get_user_model().objects.filter(username="gina").exists()
