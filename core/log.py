"""Log context (request id, tenant id, job id) and the two log formats: JSON in production, console in dev.

Every log line written while a request or a job is handled carries the ids that are known at that moment,
whichever logger wrote it (Django, RQ, boto, our code). The ids live in a ``ContextVar`` so concurrent
requests (asyncio tasks of a uvicorn worker, and the threads their sync code runs on, which asgiref gives a
copy of the task's context) never see each other's ids, and a ``logging.Filter`` copies them onto each
record; the formatters only render what the filter put there. Nothing here imports Django settings, so the
settings module can reference these classes from ``LOGGING``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

CONTEXT_FIELDS = ("request_id", "tenant_id", "job_id")

_context: ContextVar[dict[str, str] | None] = ContextVar("audioseal_log_context", default=None)
# The request being handled, read lazily: authentication sets ``request.tenant`` in the middle of the view.
_request: ContextVar[Any] = ContextVar("audioseal_log_request", default=None)


def current() -> dict[str, str]:
    """The ids bound in this thread/task (a copy)."""
    return dict(_context.get() or {})


def bind(**ids: Any) -> None:
    """Add ids to the current context (e.g. the tenant once the request is authenticated).

    ``None`` or empty values are ignored, so callers can pass whatever they have.
    """
    merged = current()
    merged.update({k: str(v) for k, v in ids.items() if v not in (None, "")})
    _context.set(merged)


@contextlib.contextmanager
def context(**ids: Any) -> Iterator[None]:
    """Bind ``ids`` for the duration of a block (a request, a job) and restore the previous context."""
    token = _context.set({**current(), **{k: str(v) for k, v in ids.items() if v not in (None, "")}})
    try:
        yield
    finally:
        _context.reset(token)


@contextlib.contextmanager
def request_scope(request: Any) -> Iterator[None]:
    """Make ``request`` the current request, so its tenant (once authenticated) is logged."""
    token = _request.set(request)
    try:
        yield
    finally:
        _request.reset(token)


def _tenant_of_request() -> str | None:
    request = _request.get()
    tenant = getattr(request, "tenant", None) if request is not None else None
    pk = getattr(tenant, "pk", None)
    return str(pk) if pk is not None else None


class ContextFilter(logging.Filter):
    """Copy the bound ids onto every record (``record.request_id`` etc.; absent ids are not set)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _context.get() or {}
        for key in CONTEXT_FIELDS:
            if key in ctx and not hasattr(record, key):
                setattr(record, key, ctx[key])
        if not hasattr(record, "tenant_id"):
            tenant_id = _tenant_of_request()
            if tenant_id:
                record.tenant_id = tenant_id
        return True


class ConsoleFormatter(logging.Formatter):
    """Readable one-liners for development: ``... message [request_id=… tenant_id=…]``."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = [f"{key}={getattr(record, key)}" for key in CONTEXT_FIELDS if getattr(record, key, None)]
        if not ids:
            return text
        first, sep, rest = text.partition("\n")
        return f"{first} [{' '.join(ids)}]{sep}{rest}"


class JsonFormatter(_BaseJsonFormatter):
    """One JSON object per line: timestamp, level, logger, message, the context ids and any ``extra``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", "%(asctime)s %(levelname)s %(name)s %(message)s")
        kwargs.setdefault("rename_fields", {"asctime": "time", "levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", False)
        super().__init__(*args, **kwargs)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        from datetime import UTC, datetime

        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
