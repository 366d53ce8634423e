"""ASGI entry point: ``gunicorn -c deploy/gunicorn.conf.py audioseal_site.asgi:application`` (uvicorn workers).

Django's ASGI handler, with request bodies read the way the WSGI server read them (``ASGIHandler``). Views are
the same under both; ``?wait`` is served without a thread here (``jobs.api.waiting``).
"""

from __future__ import annotations

import contextvars
import os
import tempfile

import django
from django.conf import settings
from django.core.exceptions import RequestAborted
from django.core.handlers import asgi

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "audioseal_site.settings")

# Bodies up to this size stay in memory; larger ones go to a temporary file as they arrive.
SPOOL_MEMORY_BYTES = 1024 * 1024

_scope: contextvars.ContextVar[tuple[dict, dict]] = contextvars.ContextVar("audioseal_asgi_scope")


def max_body_bytes() -> int:
    """The largest body an endpoint accepts: the largest upload times the most files a kind takes, plus
    1 MB of form fields (``JobCreateView._check_content_length`` refuses per kind)."""
    from jobs.kinds import KINDS

    files = max(len(spec.input_names) for spec in KINDS.values())
    return settings.MAX_UPLOAD_BYTES * files + 1024 * 1024


class ASGIHandler(asgi.ASGIHandler):
    """Django's handler, reading request bodies like the WSGI server did.

    Django reads the whole body before the view runs, into a file spooled in memory up to
    ``FILE_UPLOAD_MAX_MEMORY_SIZE``, which is 0 here (uploads go to disk), and 0 means *never* roll over: a
    100 MB upload would sit in memory. Here a body past 1 MB goes to a temporary file. A body larger than
    any endpoint accepts is not read at all (declared ``Content-Length``) or no further (chunked: the request
    then says how much arrived): the view refuses it from the length, ``413 FILE_TOO_LARGE`` after
    authentication as under WSGI, instead of the server first receiving all of it.
    """

    async def handle(self, scope, receive, send):
        unread = {"body": False}

        async def receive_after_body():
            """After a body left unread, what Django listens to (for a disconnect) skips the rest of it."""
            while True:
                message = await receive()
                if not (unread["body"] and message["type"] == "http.request"):
                    return message

        token = _scope.set((scope, unread))
        try:
            await super().handle(scope, receive_after_body, send)
        finally:
            _scope.reset(token)

    async def read_body(self, receive):
        scope, unread = _scope.get(None) or ({}, {})
        limit = max_body_bytes()
        declared = None
        for name, value in scope.get("headers", ()):
            if name.lower() == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    pass
        body_file = tempfile.SpooledTemporaryFile(
            max_size=SPOOL_MEMORY_BYTES, mode="w+b", dir=settings.FILE_UPLOAD_TEMP_DIR
        )
        if declared is not None and declared > limit:
            unread["body"] = True
            return body_file  # empty: the view answers 413 from the declared length
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                body_file.close()
                raise RequestAborted()
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                unread["body"] = True
                if declared is None:  # chunked: tell the view how much came, so that it refuses
                    scope["headers"] = [*scope.get("headers", ()), (b"content-length", str(received).encode())]
                break
            body_file.write(chunk)
            if not message.get("more_body", False):
                break
        body_file.seek(0)
        return body_file


django.setup(set_prefix=False)
application = ASGIHandler()
