"""Which redirect URIs a client may register (RFC 6749 §3.1.2, RFC 8252 §7, RFC 9700 §4.1).

Matching at request time is exact string equality against the registered list (no wildcard,
no prefix, no normalisation), so everything that makes a URI ambiguous is refused here, once.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

MAX_URI_LENGTH = 2000
# RFC 8252 §7.1: private-use schemes for native apps are reverse domain names (com.example.app).
_PRIVATE_SCHEME_RE = re.compile(r"^[a-z][a-z0-9+.-]*\.[a-z0-9+.-]+$")
_FORBIDDEN_SCHEMES = {"javascript", "data", "vbscript", "file", "blob", "about", "ftp", "ws", "wss"}


def _loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def redirect_uri_problem(uri: str, *, production: bool) -> str | None:
    """Why `uri` cannot be registered as a redirect URI, or None if it can."""
    if not isinstance(uri, str) or not uri:
        return "is empty"
    if len(uri) > MAX_URI_LENGTH:
        return f"is longer than {MAX_URI_LENGTH} characters"
    if any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in uri) or not uri.isascii():
        return "contains spaces, control or non-ASCII characters (percent-encode them)"
    if "*" in uri:
        return "contains a wildcard; redirect URIs match exactly"
    if "\\" in uri:
        return "contains a backslash"
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return "is not a valid URI"
    scheme = parts.scheme.lower()
    if not scheme:
        return "is not absolute (it needs a scheme such as https://)"
    if parts.fragment or "#" in uri:
        return "has a fragment (RFC 6749 §3.1.2)"
    if scheme in _FORBIDDEN_SCHEMES:
        return f"uses the {scheme}: scheme"
    if scheme in {"http", "https"}:
        if not parts.hostname:
            return "has no host"
        if parts.username is not None or parts.password is not None:
            return "has user information before the host"
        if scheme == "http" and production and not _loopback(parts.hostname):
            return "uses http:// for a host other than the loopback interface (use https://)"
        return None
    if _PRIVATE_SCHEME_RE.match(scheme):
        return None  # a native app's private-use scheme (RFC 8252 §7.1)
    return "uses a scheme that is neither https:// nor a reverse-domain app scheme"
