"""Assertions every app's tests use: the API's error shape, and waiting for an event with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, getattr(response, "data", response.content))
    body = response.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "", interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned); fail after ``timeout`` seconds.

    A deadline for an event, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)
