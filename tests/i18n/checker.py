"""Finds English left on a page rendered in another language.

A page is rendered twice in the same state, in English and in German. Every piece of text a
person meets (text nodes, and the attributes read out or shown: placeholder, aria-label, title,
alt, the value of buttons, the data-msg-* messages the passkey script shows) is collected from
both. A piece of the English page that is still
on the German page is untranslated, unless it is the same in both languages by right: data
(the product name, usernames, addresses, app and device names, codes, dates and numbers, given
by the test as `data`), or a catalog entry whose German is the English word ("Code", "Name",
"Status", "App"). Text inside an element marked lang="en" (the protocol's error_description,
shown to developers) is English by design and skipped.

A second check needs no English page: no piece of the German page may be a msgid of the
catalog whose German differs (an English sentence the catalog has, shown untranslated).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from tests.i18n.catalog import entries

_READ_ATTRIBUTES = ("placeholder", "aria-label", "title", "alt")
_SKIPPED = {"script", "style", "template"}
_VOID = {
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
    "track", "wbr",
}  # fmt: skip
# Letters make a text a sentence or a word; without any (dates, numbers, punctuation) it is
# the same in every language.
_LETTER = re.compile(r"[^\W\d_]")


class _Texts(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self._stack: list[tuple[str, bool]] = []  # (tag, skipped: script or lang="en")
        self.lang: str | None = None

    def _skipping(self) -> bool:
        return any(skip for _tag, skip in self._stack)

    def handle_starttag(self, tag, attrs) -> None:
        values = dict(attrs)
        if tag == "html":
            self.lang = values.get("lang")
        skip = tag in _SKIPPED or (values.get("lang") or "").lower().startswith("en")
        if not (skip or self._skipping()):
            for name, value in values.items():
                # data-msg-*: the messages passkey.js shows, written by the page.
                if value and (name in _READ_ATTRIBUTES or name.startswith("data-msg-")):
                    self.texts.append(value)
            button = tag == "input" and values.get("type") in ("submit", "button")
            if button and values.get("value"):
                self.texts.append(values["value"])
        if tag not in _VOID:
            self._stack.append((tag, skip))

    def handle_startendtag(self, tag, attrs) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self._stack.pop()

    def handle_endtag(self, tag) -> None:
        for index in range(len(self._stack) - 1, -1, -1):
            if self._stack[index][0] == tag:
                del self._stack[index:]
                break

    def handle_data(self, data) -> None:
        if not self._skipping():
            self.texts.append(data)


def _normal(text: str) -> str:
    return " ".join(text.split())


def page_texts(html: str) -> tuple[str | None, list[str]]:
    """(<html lang>, the page's texts, whitespace-normalised, with letters in them)."""
    parser = _Texts()
    parser.feed(html)
    parser.close()
    texts = [_normal(text) for text in parser.texts]
    return parser.lang, [text for text in texts if _LETTER.search(text)]


def _same_in_both() -> set[str]:
    return {
        entry.msgid
        for entry in entries()
        if entry.msgid_plural is None and entry.msgstr == [entry.msgid]
    }


def _english_msgids() -> set[str]:
    """Catalog msgids without placeholders whose German differs: whole English texts."""
    return {
        _normal(entry.msgid)
        for entry in entries()
        if "%(" not in entry.msgid and entry.msgstr != [entry.msgid]
    }


def untranslated(*, english: str, german: str, data: set[str] = frozenset()) -> list[str]:
    """The texts of the German page that are English (see the module docstring)."""
    _lang, english_texts = page_texts(english)
    _lang, german_texts = page_texts(german)
    allowed = _same_in_both() | {_normal(value) for value in data if value}
    leftover = set(english_texts) & set(german_texts)
    found = {text for text in leftover if text not in allowed and not _only_data(text, allowed)}
    found |= {text for text in german_texts if text in _english_msgids()}
    return sorted(found)


def _only_data(text: str, allowed: set[str]) -> bool:
    """A text made of allowed values and characters without letters only ("dana (Browser)")."""
    rest = text
    for value in sorted(allowed, key=len, reverse=True):
        rest = rest.replace(value, " ")
    return not _LETTER.search(rest)
