"""No DNS on the test machines: answer chosen host names with chosen addresses, leave the rest to the real
resolver (an IP literal resolves without DNS). For the SSRF guard's tests."""

from __future__ import annotations

import socket


def fake_dns(monkeypatch, answers: dict[str, str]) -> None:
    """Make ``socket.getaddrinfo`` answer ``answers`` (host -> IPv4 address) for the rest of the test."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
