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


def run_side_by_side(calls: dict[str, Callable[[], Any]], timeout: float = 120.0) -> dict[str, Any]:
    """Run each callable on its own thread, all released together by a barrier; their results by name.

    For tests of code that other threads call at the same time (the worker's model lanes): the first
    exception any thread met is raised here, and a thread still running after ``timeout`` fails the test."""
    import threading

    start = threading.Barrier(len(calls), timeout=timeout)
    results: dict[str, Any] = {}
    errors: list[BaseException] = []

    def run(name: str, call: Callable[[], Any]) -> None:
        try:
            start.wait()
            results[name] = call()
        except BaseException as exc:  # noqa: BLE001 - re-raised on the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=item, daemon=True) for item in calls.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    if errors:
        raise errors[0]
    stuck = [name for name in calls if name not in results]
    assert not stuck, f"still running after {timeout}s: {stuck}"
    return results
