"""Who is the client? The proxy-header policy, in one place.

`X-Forwarded-For` is believed only when the TCP peer (REMOTE_ADDR) is one of
AUTHSERVER_TRUSTED_PROXIES. The header is then read right to left: each trusted proxy appends the
address it received the request from, so the first address that is not itself a trusted proxy
is the client. Everything to the left of it was written by the client and is ignored (anyone can
send `X-Forwarded-For: 1.2.3.4`). With no trusted proxies configured the header is never read.

A peer on a Unix socket has no address (gunicorn gives REMOTE_ADDR ""). The entry "unix" in
AUTHSERVER_TRUSTED_PROXIES says that peer is the proxy in front of us, so the walk above starts
at the header's rightmost entry. Without it such a request has no client IP, and every client
would share one throttle bucket; authserver therefore refuses to listen on a Unix socket unless
"unix" is trusted (authserver/settings.py, deploy/gunicorn.conf.py).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.core.exceptions import ImproperlyConfigured

from authserver.conf import get_config

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Longer than any textual IP with port and zone; longer entries are not addresses.
_MAX_ADDRESS_LENGTH = 64
# Hops read from X-Forwarded-For at most: a client may send thousands of fake entries.
_MAX_FORWARDED_HOPS = 32
# The AUTHSERVER_TRUSTED_PROXIES entry that trusts the peer of a Unix socket.
UNIX_PEER = "unix"


def unix_peer_trusted(entries) -> bool:
    """Whether a trusted-proxy list trusts the peer of a Unix socket."""
    return any(entry.strip().lower() == UNIX_PEER for entry in entries)


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    networks = []
    for entry in entries:
        if entry.strip().lower() == UNIX_PEER:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"AUTHSERVER_TRUSTED_PROXIES has {entry!r}, which is not an IP, a CIDR or 'unix'"
            ) from None
    return tuple(networks)


# Parsing an address with ipaddress and printing it back took about half the cost of client_ip
# (4-9 us), once or twice per token request; the same few peers come back all the time. A bound
# keeps a flood of made-up forwarded addresses from growing it: they only push others out.
_PARSED_ADDRESSES = 4096


@lru_cache(maxsize=_PARSED_ADDRESSES)
def ip_parse(raw: str) -> IPAddress | None:
    """A forwarded address as written by common proxies: `1.2.3.4`, `1.2.3.4:5678`, `::1`,
    `[::1]` or `[::1]:5678`. IPv4-mapped IPv6 becomes IPv4. Anything else: None."""
    text = (raw or "").strip()
    if not text or len(text) > _MAX_ADDRESS_LENGTH:
        return None
    if text.startswith("["):
        end = text.find("]")
        if end == -1:
            return None
        rest = text[end + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        text = text[1:end]
    elif text.count(":") == 1:  # IPv4 with a port; bare IPv6 has at least two colons
        host, _, port = text.partition(":")
        if not port.isdigit():
            return None
        text = host
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


@lru_cache(maxsize=_PARSED_ADDRESSES)
def _text(address: IPAddress) -> str:
    return str(address)


def _trusted(address: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def client_ip(request) -> str:
    """The client's IP address under the proxy policy above; "" if there is none to be had (a
    Unix-socket peer that is not trusted, or a trusted one that sent no usable header)."""
    entries = get_config().trusted_proxies
    networks = _networks(entries)
    client: IPAddress | None = ip_parse(request.META.get("REMOTE_ADDR", ""))
    if client is None:
        # No address: a Unix-socket peer. Only a trusted one is asked who the client is.
        if not unix_peer_trusted(entries):
            return ""
    elif not networks or not _trusted(client, networks):
        return _text(client)
    # Django joins repeated X-Forwarded-For headers with ","; order is preserved.
    hops = [hop for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    for raw in reversed(hops[-_MAX_FORWARDED_HOPS:]):
        address = ip_parse(raw)
        if address is None:
            # A trusted proxy wrote something that is not an address: nothing to its left can
            # be believed, so the client is the last hop we could verify.
            break
        client = address
        if not _trusted(address, networks):
            break
    return "" if client is None else _text(client)
