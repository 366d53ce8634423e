"""The SSRF guard: may the server call this URL? Only http(s), and only hosts whose addresses are public.

Used wherever the server makes a request to a URL a customer gave it (job webhooks today; input by URL
later). The host is resolved and *every* address must be globally routable unicast (no loopback, private,
link-local such as 169.254.169.254, multicast, reserved, unspecified or shared ranges); a caller then
connects to a vetted address itself, so DNS cannot change the answer between the check and the request.
``WEBHOOK_ALLOWED_HOSTS`` (host names, IPs or CIDR networks) exempts hosts: for tests and internal receivers.
Errors name the host, never what it resolved to: our internal DNS answers are nobody else's business.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


class UnsafeURL(Exception):
    """The URL is not one we may call (scheme, unresolvable host, or a non-public address)."""


def _allow_list(
    entries: list[str] | tuple[str, ...] | None = None,
) -> tuple[set[str], list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    names: set[str] = set()
    networks = []
    for entry in settings.WEBHOOK_ALLOWED_HOSTS if entries is None else entries:
        entry = entry.strip().lower()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            names.add(entry)
    return names, networks


# IPv6 forms that carry an IPv4 address a packet may end up at (transition mechanisms): an address in one of
# them is only as public as the IPv4 addresses inside it. NAT64's local-use prefix is never global.
_NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address leads to: IPv4-mapped and -compatible, 6to4 (2002::/16), Teredo
    (2001::/32: its server and its client), NAT64 (64:ff9b::/96) and ISATAP interface identifiers."""
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _NAT64_WELL_KNOWN or (address in _IPV4_COMPATIBLE and int(address) > 1):
        found.append(low32)
    if (int(address) >> 32) & 0xFDFFFFFF == 0x00005EFE:  # ISATAP: interface id 0000:5efe or 0200:5efe
        found.append(low32)
    return found


def _plainly_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return address.is_global and not (
        address.is_multicast or address.is_private or address.is_loopback or address.is_link_local
        or address.is_reserved or address.is_unspecified
    )


def is_public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True only for globally routable unicast addresses; an IPv6 address that embeds IPv4 addresses
    (``embedded_ipv4``) is public only when every one of them is."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in _NAT64_LOCAL_USE:
            return False
        inner = embedded_ipv4(address)
        if address.ipv4_mapped is not None:  # ::ffff:a.b.c.d is just the IPv4 address
            return _plainly_public(address.ipv4_mapped)
        if address in _NAT64_WELL_KNOWN:  # a translator reaches the IPv4 address inside (::/8 is "reserved")
            return _plainly_public(inner[0])
        if inner and not all(_plainly_public(v4) for v4 in inner):
            return False
    return _plainly_public(address)


def parse_url(url: str) -> tuple[str, str, int]:
    if len(url) > 2000:
        raise UnsafeURL("The URL is longer than 2000 characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"The URL is malformed: {exc}.") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeURL("Only http:// and https:// URLs are allowed.")
    host = (parts.hostname or "").lower()
    if not host:
        raise UnsafeURL("The URL has no host.")
    return scheme, host, port or (443 if scheme == "https" else 80)


def vetted_addresses(host: str, port: int, allowed: list[str] | tuple[str, ...] | None = None) -> list[str]:
    """Resolve ``host`` and return its addresses if every one of them may be called; else raise.

    ``allowed``: the exemption list to apply (default ``WEBHOOK_ALLOWED_HOSTS``; input by URL passes its own)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise UnsafeURL(f"The host {host!r} does not resolve.") from exc
    addresses = list(dict.fromkeys(info[4][0].split("%", 1)[0] for info in infos))
    if not addresses:
        raise UnsafeURL(f"The host {host!r} does not resolve.")
    names, networks = _allow_list(allowed)
    if host in names:
        return addresses
    refused = []
    for text in addresses:
        address = ipaddress.ip_address(text)
        if any(address in network for network in networks):
            continue
        if not is_public_address(address):
            refused.append(text)
    if refused:
        # Name the host, never what it resolved to: the answer of our internal DNS is nobody else's business.
        raise UnsafeURL(
            f"The host {host!r} is or resolves to a non-public address; "
            "the server only calls public internet addresses."
        )
    return addresses


def check_url(url: str) -> tuple[str, str, int]:
    """Parse and vet ``url``; returns ``(scheme, host, port)`` or raises ``UnsafeURL``."""
    scheme, host, port = parse_url(url)
    vetted_addresses(host, port)
    return scheme, host, port
