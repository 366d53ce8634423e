"""Helpers for code that Django runs under ASGI (``audioseal_site.asgi``) and must not pin a thread.

* ``release_request_thread()``: Django's ASGI handler gives each request one thread for its sync code
  (asgiref's ``ThreadSensitiveContext``). It lives as long as the request, so a view that awaits something long
  (``?wait=N``) would keep one idle thread per waiting request. Call this after the request's last sync step
  before the long await (and after closing the thread's database connection): the thread exits, and the next
  sync step of the same request starts a fresh one.
* ``FileResponse``: Django's ``FileResponse`` reads a file in its iterator, which Django's ASGI handler can only
  consume by reading the *whole file* into memory first (and warns). This one also iterates asynchronously:
  each chunk is read in a worker thread and sent before the next is read. Under WSGI it is Django's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from asgiref.sync import SyncToAsync, sync_to_async
from django.http import FileResponse as _FileResponse


def release_request_thread() -> bool:
    """Shut down this request's thread-sensitive executor, if it has one; returns whether it did.

    Only between sync steps: nothing may be running in it. Outside an ASGI request (a test client on a sync
    thread, WSGI) there is none and this does nothing.
    """
    context = SyncToAsync.thread_sensitive_context.get(None)
    if context is None:
        return False
    executor = SyncToAsync.context_to_thread_executor.pop(context, None)
    if executor is None:
        return False
    executor.shutdown(wait=False)  # the idle thread wakes and exits; nothing is queued
    return True


class FileResponse(_FileResponse):
    """``django.http.FileResponse`` that an ASGI server streams chunk by chunk."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = iter(self.streaming_content)
        read = sync_to_async(next, thread_sensitive=False)
        while (chunk := await read(chunks, None)) is not None:
            yield chunk
