"""Issue 18.3: `makemessages` leaves no fuzzy, missing or obsolete entry in the German catalog,
and the compiled catalog the server reads is the one of the .po.

makemessages (GNU gettext's xgettext and msgmerge) runs with the options of `make messages`
(scripts/messages.py) on a copy of the tree, so the checkout is never written to.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from gettext import GNUTranslations

import pytest

from tests.i18n.catalog import GERMAN_PO, ROOT, entries

pytestmark = pytest.mark.slow

_NOT_COPIED = {".venv", "node_modules", ".git", "site", "var", "__pycache__", ".pytest_cache"}


def _messages_module():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import messages  # scripts/messages.py
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    return messages


def _require(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} (GNU gettext) is not installed: apt-get install gettext")


def test_makemessages_leaves_the_german_catalog_complete(tmp_path):
    for tool in ("xgettext", "msgmerge", "msguniq"):
        _require(tool)
    copy = tmp_path / "tree"
    shutil.copytree(ROOT, copy, ignore=lambda _dir, names: _NOT_COPIED & set(names))
    _messages_module().makemessages_run(source_root=copy)

    updated = entries(copy / GERMAN_PO.relative_to(ROOT))
    committed = entries(GERMAN_PO)
    assert updated, "makemessages wrote an empty catalog"
    fuzzy = [e.msgid for e in updated if "fuzzy" in e.flags]
    missing = [e.msgid for e in updated if not e.translated and not e.obsolete]
    assert not fuzzy, f"fuzzy entries after makemessages: {fuzzy}"
    assert not missing, f"untranslated entries after makemessages (run `make messages`): {missing}"
    # Nothing the code no longer uses, and nothing new the committed catalog lacks.
    assert not [e.msgid for e in committed if e.obsolete], "obsolete (#~) entries in django.po"
    new = {e.msgid for e in updated} - {e.msgid for e in committed}
    gone = {e.msgid for e in committed} - {e.msgid for e in updated}
    assert not new, f"strings marked in the code but missing from django.po: {sorted(new)}"
    assert not gone, f"entries of django.po the code no longer has: {sorted(gone)}"


def test_the_committed_catalog_is_complete_and_compiled(tmp_path):
    found = entries(GERMAN_PO)
    assert len(found) > 400
    assert not [e.msgid for e in found if "fuzzy" in e.flags or e.obsolete]
    assert not [e.msgid for e in found if not e.translated]
    mo = GERMAN_PO.with_suffix(".mo")
    assert mo.exists(), "locale/de/LC_MESSAGES/django.mo is not committed (run `make messages`)"
    if shutil.which("msgfmt") is None:
        return
    fresh = tmp_path / "django.mo"
    subprocess.run(["msgfmt", "--check-format", "-o", str(fresh), str(GERMAN_PO)], check=True)
    with mo.open("rb") as committed, fresh.open("rb") as compiled:
        assert GNUTranslations(committed)._catalog == GNUTranslations(compiled)._catalog, (
            "django.mo is older than django.po (run `make messages`)"
        )


def test_placeholders_survive_translation():
    for entry in entries(GERMAN_PO):
        sources = [entry.msgid] + ([entry.msgid_plural] if entry.msgid_plural else [])
        wanted = set().union(*(_placeholders(s) for s in sources))
        for translation in entry.msgstr:
            extra = _placeholders(translation) - wanted
            assert not extra, f"{entry.msgid!r}: unknown placeholders {extra}"
        if entry.msgid_plural is None:
            assert _placeholders(entry.msgstr[0]) == wanted, entry.msgid


def _placeholders(text: str) -> set[str]:
    return set(re.findall(r"%\(\w+\)[sd]", text))
