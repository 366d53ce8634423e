"""The gunicorn worker class of ``deploy/gunicorn.conf.py``: ``uvicorn_worker.UvicornWorker``, configured.

* ``proxy_headers`` off: uvicorn would otherwise replace the client address with the left-most (client-
  controlled) ``X-Forwarded-For`` entry, since gunicorn's ``forwarded_allow_ips`` trusts every peer.
  ``REMOTE_ADDR`` stays the socket's peer, as under gthread; the application reads ``X-Forwarded-For`` itself
  with ``TRUSTED_PROXY_COUNT`` (``audioseal_site.login_throttle``) and ``X-Forwarded-Proto`` with
  ``SECURE_PROXY_SSL_HEADER``.
* ``lifespan`` off: Django's ASGI application has no lifespan protocol.
"""

from __future__ import annotations

from typing import Any

from uvicorn_worker import UvicornWorker as _UvicornWorker


class UvicornWorker(_UvicornWorker):
    CONFIG_KWARGS: dict[str, Any] = {**_UvicornWorker.CONFIG_KWARGS, "proxy_headers": False, "lifespan": "off"}
