"""The SSRF guard judges IPv6 transition forms by the IPv4 addresses they lead to."""

from __future__ import annotations

import ipaddress

import pytest

from core.urlguard import embedded_ipv4, is_public_address


@pytest.mark.parametrize(
    "text",
    [
        "93.184.216.34",
        "2606:4700::1111",
        "::ffff:93.184.216.34",
        "2002:5db8:d822::1",  # 6to4 of 93.184.216.34
        "64:ff9b::5db8:d822",  # NAT64 of 93.184.216.34
    ],
)
def test_public_addresses_and_transition_forms_of_public_ipv4_are_public(text):
    assert is_public_address(ipaddress.ip_address(text))


@pytest.mark.parametrize(
    "text, inner",
    [
        ("2002:7f00:1::1", "127.0.0.1"),
        ("2002:a9fe:a9fe::1", "169.254.169.254"),
        ("2002:0a00:0001::", "10.0.0.1"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "192.0.2.45"),  # Teredo: the client inside
        ("64:ff9b::a9fe:a9fe", "169.254.169.254"),
        ("::7f00:1", "127.0.0.1"),
        ("2a00:1450::5efe:a00:1", "10.0.0.1"),
        ("2a00:1450::200:5efe:c0a8:101", "192.168.1.1"),
    ],
)
def test_transition_forms_wrapping_private_ipv4_are_refused(text, inner):
    address = ipaddress.ip_address(text)
    assert ipaddress.ip_address(inner) in embedded_ipv4(address)
    assert not is_public_address(address)


def test_nat64_local_use_prefix_is_never_public():
    assert not is_public_address(ipaddress.ip_address("64:ff9b:1::5db8:d822"))
