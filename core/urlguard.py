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


def _allow_list() -> tuple[set[str], list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    names: set[str] = set()
    networks = []
    for entry in settings.WEBHOOK_ALLOWED_HOSTS:
        entry = entry.strip().lower()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            names.add(entry)
    return names, networks


def is_public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True only for globally routable unicast addresses (IPv4-mapped IPv6 judged by its IPv4 address)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not (
        address.is_multicast or address.is_private or address.is_loopback or address.is_link_local
        or address.is_reserved or address.is_unspecified
    )


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


def vetted_addresses(host: str, port: int) -> list[str]:
    """Resolve ``host`` and return its addresses if every one of them may be called; else raise."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise UnsafeURL(f"The host {host!r} does not resolve.") from exc
    addresses = list(dict.fromkeys(info[4][0].split("%", 1)[0] for info in infos))
    if not addresses:
        raise UnsafeURL(f"The host {host!r} does not resolve.")
    names, networks = _allow_list()
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
            "callbacks may only target public internet addresses."
        )
    return addresses


def check_url(url: str) -> tuple[str, str, int]:
    """Parse and vet ``url``; returns ``(scheme, host, port)`` or raises ``UnsafeURL``."""
    scheme, host, port = parse_url(url)
    vetted_addresses(host, port)
    return scheme, host, port
