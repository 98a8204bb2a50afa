"""Read a gettext catalog (.po) without a library: its entries, for the translation tests."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GERMAN_PO = ROOT / "locale" / "de" / "LC_MESSAGES" / "django.po"

_LINE = re.compile(r'^(msgctxt|msgid|msgid_plural|msgstr(?:\[\d+\])?) "(.*)"$')
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}


@dataclass
class Entry:
    msgid: str
    msgid_plural: str | None = None
    msgstr: list[str] = field(default_factory=list)
    flags: set[str] = field(default_factory=set)
    obsolete: bool = False

    @property
    def translated(self) -> bool:
        return bool(self.msgstr) and all(self.msgstr)


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), text)


def entries(path: Path = GERMAN_PO) -> list[Entry]:
    """Every entry but the header, obsolete ones (#~) included and marked."""
    found: list[Entry] = []
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        fields: dict[str, str] = {}
        flags: set[str] = set()
        obsolete = False
        key = None
        for raw in block.splitlines():
            line = raw
            if line.startswith("#~"):
                obsolete = True
                line = line[2:].strip()
            elif line.startswith("#,"):
                flags |= {flag.strip() for flag in line[2:].split(",")}
                continue
            elif line.startswith("#"):
                continue
            if match := _LINE.match(line):
                key = match.group(1)
                fields[key] = match.group(2)
            elif line.startswith('"') and key:
                fields[key] += line[1:-1]
        if "msgid" not in fields or (fields["msgid"] == "" and "msgctxt" not in fields):
            continue  # the header (or a comment-only block)
        msgstr = [
            _unescape(value) for name, value in sorted(fields.items()) if name.startswith("msgstr")
        ]
        plural = fields.get("msgid_plural")
        found.append(
            Entry(
                msgid=_unescape(fields["msgid"]),
                msgid_plural=_unescape(plural) if plural is not None else None,
                msgstr=msgstr,
                flags=flags,
                obsolete=obsolete,
            )
        )
    return found
