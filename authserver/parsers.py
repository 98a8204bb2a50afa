"""Bounded JSON: every JSON request body, and any JSON we decode from a client, goes through here.

Python's json module recurses once per nesting level and raises RecursionError (not ValueError)
near the interpreter's recursion limit, so `[` x 50,000 used to escape DRF's JSONParser as a 500
with a traceback in the log. Bodies are also read here up to DATA_UPLOAD_MAX_MEMORY_SIZE only:
DRF reads the request stream directly, which Django's size check does not cover.

The nesting depth is measured before parsing, with regular expressions only (C speed, linear
time): strings are dropped, then every innermost pair of brackets is removed once per level. Our
APIs take flat objects; MAX_JSON_DEPTH leaves room for any legitimate body while keeping every
recursive consumer of the parsed value far from the recursion limit.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.utils.json import strict_constant

MAX_JSON_DEPTH = 32

# A JSON string (to its closing quote, or to the end when unterminated: possessive and always
# matching once started, so there is no backtracking), or a run of anything but brackets/quotes.
_NOT_A_BRACKET = re.compile(r'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)|[^\[\]{}"]+', re.DOTALL)
_INNERMOST_PAIR = re.compile(r"\[\]|\{\}")
_OPENERS = re.compile(r"[\[{]+")


class JsonTooDeep(ValueError):
    """Nested deeper than MAX_JSON_DEPTH (or brackets that do not pair up)."""


def json_depth_within(text: str, max_depth: int = MAX_JSON_DEPTH) -> bool:
    """True when no array or object in `text` is nested more than `max_depth` levels.

    Unbalanced brackets count as too deep: such text is not JSON anyway."""
    brackets = _NOT_A_BRACKET.sub("", text)
    for level in range(max_depth):
        if not brackets:
            return True
        # What is left after `level` passes is nested `level` levels deeper than it looks: a run
        # of more than max_depth - level openers settles it without the remaining passes.
        if max(map(len, _OPENERS.findall(brackets)), default=0) > max_depth - level:
            return False
        brackets = _INNERMOST_PAIR.sub("", brackets)
    return not brackets


def json_loads_bounded(text: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """json.loads that raises ValueError (never RecursionError) on input nested too deeply."""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8")  # UnicodeDecodeError is a ValueError
    if not json_depth_within(text, max_depth):
        raise JsonTooDeep(f"JSON nested more than {max_depth} levels")
    try:
        return json.loads(text)
    except RecursionError:  # only reachable with an unusually small recursion limit
        raise JsonTooDeep("JSON nested too deeply") from None


def _bounded_parse(read, encoding: str, strict: bool = True) -> Any:
    """Read a JSON body with `read(n)` and parse it under the size and depth caps.

    RequestDataTooBig past DATA_UPLOAD_MAX_MEMORY_SIZE; ParseError for anything not JSON."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    raw = read(limit + 1) if limit is not None else read()
    if limit is not None and len(raw) > limit:
        raise RequestDataTooBig("The request body is too large.")
    try:
        text = raw.decode(encoding)
        if not json_depth_within(text):
            raise JsonTooDeep(f"JSON nested more than {MAX_JSON_DEPTH} levels")
        return json.loads(text, parse_constant=strict_constant if strict else None)
    except (ValueError, LookupError, RecursionError):
        raise ParseError("The request body is not valid JSON.") from None


def json_request_data(request: HttpRequest) -> Any:
    """What DRF's `request.data` is with BoundedJSONParser, for a view that has already refused
    every body that is not application/json (JsonApi answers those 415): {} without a body, the
    parsed JSON otherwise, with the same errors.

    Without DRF's machinery around the parser (choosing a parser by media type, wrapping the
    stream, the data/files split): a few per cent of a refresh (bench/README.md)."""
    meta = request.META
    try:
        length = int(meta.get("CONTENT_LENGTH", meta.get("HTTP_CONTENT_LENGTH", 0)))
    except (ValueError, TypeError):
        length = 0
    if length == 0:
        return {}
    # As DRF does for a JSON parser: the whole body through HttpRequest.body (which refuses a
    # Content-Length above DATA_UPLOAD_MAX_MEMORY_SIZE), then the parser's own caps.
    body = io.BytesIO(request.body)
    return _bounded_parse(body.read, request.encoding or settings.DEFAULT_CHARSET)


class BoundedJSONParser(JSONParser):
    """DRF's JSONParser with a size cap and a depth cap; every failure is a ParseError, which
    authserver.errors answers as 400 invalid_request (413 for an oversized body)."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET
        return _bounded_parse(stream.read, encoding, self.strict)
