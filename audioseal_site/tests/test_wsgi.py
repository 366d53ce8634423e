"""The WSGI entry point (``audioseal_site.wsgi``, gunicorn gthread) calls ``?wait`` views' plain DRF view, not
their async front: under WSGI the front would cost an event loop and a thread per request (``async_to_sync``)
for nothing, as there is no loop to hand a wait to. The answers are the same."""

from __future__ import annotations

import io
import json

import pytest

from testing.servers import multipart
from testing.uploads import FIXTURES

pytestmark = pytest.mark.django_db(transaction=True)


def _call(application, method: str, path: str, key: str, body: bytes = b"", content_type: str = ""):
    path_info, _, query = path.partition("?")
    environ = {
        "REQUEST_METHOD": method, "PATH_INFO": path_info, "QUERY_STRING": query, "SCRIPT_NAME": "",
        "SERVER_NAME": "testserver", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "testserver", "REMOTE_ADDR": "127.0.0.1", "HTTP_AUTHORIZATION": f"Bearer {key}",
        "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body), "wsgi.errors": io.StringIO(),
        "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False, "wsgi.version": (1, 0),
        "CONTENT_LENGTH": str(len(body)), **({"CONTENT_TYPE": content_type} if content_type else {}),
    }
    started: list[str] = []
    result = application(environ, lambda status, headers, exc_info=None: started.append(status))
    try:
        content = b"".join(result)
    finally:
        result.close()
    return int(started[0].split()[0]), json.loads(content)


def test_wsgi_serves_waitable_views_without_an_event_loop(api_key, redis_clean, monkeypatch):
    from asgiref import sync

    from audioseal_site.wsgi import application
    from jobs.api.views import JobDetailView, WatermarkDetectView

    loops: list[object] = []
    original = sync.AsyncToSync.__call__

    def counted(self, *args, **kwargs):
        loops.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(sync.AsyncToSync, "__call__", counted)
    body, content_type = multipart("file", "speech.wav", (FIXTURES / "speech_16k_mono.wav").read_bytes())
    status, job = _call(application, "POST", "/api/v1/watermark/detect", api_key.secret, body, content_type)
    assert status == 202 and job["status"] == "queued" and job["kind"] == "watermark_detect", job
    status, read = _call(application, "GET", f"/api/v1/jobs/{job['id']}?wait=0", api_key.secret)
    assert status == 200 and read["id"] == job["id"] and read["status"] == "queued"
    assert loops == []  # neither request went through async_to_sync
    # Both views are async fronts, so Django's own WSGI handler would have made an event loop for each.
    for view in (WatermarkDetectView.as_view(), JobDetailView.as_view()):
        assert sync.iscoroutinefunction(view) and not sync.iscoroutinefunction(view.sync_view)
