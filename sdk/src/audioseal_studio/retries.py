"""When the SDK retries a request, and how long it waits first.

* ``429`` (rate limit, concurrency limit, too many held waits) is retried for every request: the server
  refuses it before doing anything (a refused job-creating request creates no job).
* ``502``/``503``/``504`` and connection errors are retried only for requests that are safe to send twice:
  reads (GET/HEAD), and job creations, which always carry an ``Idempotency-Key`` (the server answers a
  repeat with the job the first attempt created, so a retry can never create or bill a second job).
  A cancel (a POST without a key) is not retried after a dropped connection.
* The wait is the server's ``Retry-After`` when it sends one (seconds or an HTTP date), else exponential
  backoff with jitter (``backoff_base`` × 2^attempt, capped at ``backoff_max``). A ``Retry-After`` longer
  than ``max_retry_after`` is not waited out: the error is raised at once with ``retry_after`` on it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import httpx

from audioseal_studio.errors import parse_retry_after

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
IDEMPOTENCY_HEADER = "Idempotency-Key"


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 4
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    max_retry_after: float = 120.0
    retry_statuses: frozenset[int] = field(default_factory=lambda: frozenset({429, 502, 503, 504}))
    jitter: bool = True

    def is_repeatable(self, request: httpx.Request) -> bool:
        """Safe to send again after a lost answer: a read, or a creation carrying an Idempotency-Key."""
        return request.method in SAFE_METHODS or IDEMPOTENCY_HEADER in request.headers

    def should_retry_status(self, request: httpx.Request, response: httpx.Response) -> bool:
        if response.status_code not in self.retry_statuses:
            return False
        return response.status_code == 429 or self.is_repeatable(request)

    def backoff(self, attempt: int) -> float:
        """Seconds before retry number ``attempt + 1`` when the server named no time."""
        ceiling = min(self.backoff_max, self.backoff_base * (2**attempt))
        return random.uniform(ceiling / 2, ceiling) if self.jitter else ceiling

    def delay_for(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before retrying ``response``; None when its ``Retry-After`` is too long to wait."""
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if retry_after is None:
            return self.backoff(attempt)
        if retry_after > self.max_retry_after:
            return None
        return retry_after


NO_RETRIES = RetryPolicy(max_retries=0)
