"""WSGI entry point (gunicorn ``audioseal_site.wsgi``).

``WaitableView`` endpoints (job creation and reads that take ``?wait``) are async fronts for the ASGI server
(``jobs.api.waiting``). Under WSGI Django would run such a front through ``async_to_sync``: a new event loop
and thread per request (~1 ms of CPU on a submission, measured with ``bench.submit_profile``) that only
hands the request back to this thread. This handler calls the front's plain DRF view (``sync_view``)
instead; the JSON, status codes and headers are the same.
"""

import os

import django
from django.core.handlers.wsgi import WSGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "audioseal_site.settings")


class SyncViewsWSGIHandler(WSGIHandler):
    """Django's WSGI handler, calling a view's ``sync_view`` when it has one (see the module docstring)."""

    def make_view_atomic(self, view):
        return super().make_view_atomic(getattr(view, "sync_view", view))


def get_wsgi_application() -> SyncViewsWSGIHandler:
    """``django.core.wsgi.get_wsgi_application`` with ``SyncViewsWSGIHandler``."""
    django.setup(set_prefix=False)
    return SyncViewsWSGIHandler()


application = get_wsgi_application()
