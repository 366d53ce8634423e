"""Input by URL: fetch a customer's ``file_url`` into a temporary upload, safely and within limits.

Where: **in the request**, before the job exists, so a URL that is refused, answers 404, is too large or is
not audio gets the same synchronous error as a bad upload (a stable code, the upstream status) and leaves
no job row, no stored file and no reservation; the fetched bytes then go through exactly the upload path
(``jobs.services.probe_upload``: size, sniffed format, duration). The cost is a web thread held for the
fetch, bounded by ``FILE_URL_TOTAL_TIMEOUT_SECONDS`` (30 s, like ``?wait``) and by the plan's file size.

Safety, on every hop: https only; the host is resolved and every address must be public
(``core.urlguard``: loopback, private, link-local, metadata and IPv6 transition forms refused); the
connection goes to the vetted address itself (DNS cannot change the answer between check and connect), with
the URL's host for SNI and certificate verification. Redirects are followed by hand, at most
``FILE_URL_MAX_REDIRECTS``, each target checked again like the first URL. The body is streamed to a
temporary file and cut off past ``max_bytes`` whatever ``Content-Length`` says (a declared length over the
limit is refused before reading). Connect, per-read and total time limits apply.

Errors (``ServiceError``): ``URL_NOT_ALLOWED`` (400: scheme, credentials, a non-public or unresolvable
host, a redirect to one), ``URL_FETCH_FAILED`` (422: details ``upstream_status`` for a non-200 answer, or
``reason`` ``timeout``/``connection``/``tls``/``protocol``/``too_many_redirects``), ``FILE_TOO_LARGE`` (413),
``EMPTY_FILE`` (400).
"""

from __future__ import annotations

import functools
import http.client
import os
import socket
import ssl
import time
from urllib.parse import unquote, urljoin, urlsplit

from django.conf import settings
from django.core.files.uploadedfile import TemporaryUploadedFile
from django.utils.text import get_valid_filename

from core.errors import ServiceError
from core.urlguard import UnsafeURL, parse_url, vetted_addresses

USER_AGENT = "AudioSeal-Fetch/1.0"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
CHUNK_BYTES = 64 * 1024


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a vetted IP address, with the URL's host name for SNI and the certificate check."""

    def __init__(self, host: str, port: int, address: str, *, connect_timeout: float, read_timeout: float,
                 context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=connect_timeout, context=context)
        self._address = address
        self._read_timeout = read_timeout

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        sock.settimeout(self._read_timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def _ssl_context() -> ssl.SSLContext:
    return _context_for(settings.FILE_URL_CA_BUNDLE or "")


@functools.lru_cache(maxsize=4)
def _context_for(ca_bundle: str) -> ssl.SSLContext:
    """One verifying context per CA setting and process: loading the system's CA store takes ~47 ms on the
    2-core build machine (loaded), more than fetching a small file; a context is safe to share."""
    context = ssl.create_default_context()
    if ca_bundle:
        context.load_verify_locations(cafile=ca_bundle)
    return context


def _not_allowed(url: str, message: str, field: str) -> ServiceError:
    return ServiceError("URL_NOT_ALLOWED", message, {"field": field, "url": url[:200]})


def _failed(url: str, message: str, field: str, **details: object) -> ServiceError:
    return ServiceError("URL_FETCH_FAILED", message, {"field": field, "url": url[:200], **details})


def _vet(url: str, field: str) -> tuple[str, int, str]:
    """(host, port, vetted address) of an https URL we may fetch; URL_NOT_ALLOWED otherwise."""
    try:
        scheme, host, port = parse_url(url)
    except UnsafeURL as exc:
        raise _not_allowed(url, str(exc), field) from exc
    if scheme != "https":
        raise _not_allowed(url, f"`{field}` must be an https:// URL.", field)
    if urlsplit(url).username is not None:
        raise _not_allowed(url, f"`{field}` must not contain credentials; use a signed URL instead.", field)
    try:
        addresses = vetted_addresses(host, port, allowed=settings.FILE_URL_ALLOWED_HOSTS)
    except UnsafeURL as exc:
        raise _not_allowed(url, str(exc), field) from exc
    return host, port, addresses[0]


def filename_from(url: str) -> str:
    """The last path segment, made safe for storage names ('download' when there is none)."""
    name = os.path.basename(unquote(urlsplit(url).path or ""))
    return (get_valid_filename(name) if name else "")[:200] or "download"


def fetch(url: str, *, max_bytes: int, field: str = "file_url") -> TemporaryUploadedFile:
    """Download ``url`` into a temporary upload (deleted when closed) under the limits above.

    The caller probes and stores it like any upload and must close it.
    """
    deadline = time.monotonic() + float(settings.FILE_URL_TOTAL_TIMEOUT_SECONDS)
    current = url.strip()
    for _hop in range(int(settings.FILE_URL_MAX_REDIRECTS) + 1):
        host, port, address = _vet(current, field)
        parts = urlsplit(current)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn = _PinnedHTTPSConnection(
            host, port, address, context=_ssl_context(),
            connect_timeout=min(float(settings.FILE_URL_CONNECT_TIMEOUT_SECONDS), _left(deadline, current, field)),
            read_timeout=float(settings.FILE_URL_READ_TIMEOUT_SECONDS),
        )
        netloc_host = f"[{host}]" if ":" in host else host
        try:
            conn.request("GET", path, headers={
                "Host": netloc_host if port == 443 else f"{netloc_host}:{port}",
                "User-Agent": USER_AGENT, "Accept": "audio/*, video/*, */*;q=0.1", "Accept-Encoding": "identity",
            })
            response = conn.getresponse()
            location = response.getheader("Location")
            if response.status in REDIRECT_STATUSES and location:
                current = urljoin(current, location.strip())
                continue
            if response.status != 200:
                raise _failed(
                    current, f"The server at `{field}` answered HTTP {response.status}.", field,
                    upstream_status=response.status,
                )
            return _read_body(response, current, field, max_bytes, deadline)
        except ServiceError:
            raise
        except TimeoutError as exc:
            raise _failed(current, f"Fetching `{field}` timed out.", field, reason="timeout") from exc
        except ssl.SSLError as exc:
            raise _failed(current, f"The TLS connection to `{field}` failed: {exc.reason or exc}.", field,
                          reason="tls") from exc
        except http.client.HTTPException as exc:
            raise _failed(current, f"The server at `{field}` did not speak HTTP properly.", field,
                          reason="protocol") from exc
        except OSError as exc:
            raise _failed(current, f"Could not connect to `{field}`: {exc.strerror or exc}.", field,
                          reason="connection") from exc
        finally:
            conn.close()
    raise _failed(
        current, f"`{field}` redirected more than {settings.FILE_URL_MAX_REDIRECTS} times.", field,
        reason="too_many_redirects",
    )


def _left(deadline: float, url: str, field: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _failed(url, f"Fetching `{field}` took longer than {settings.FILE_URL_TOTAL_TIMEOUT_SECONDS:g} s.",
                      field, reason="timeout")
    return left


def _too_large(size: int, max_bytes: int, field: str, *, declared: bool) -> ServiceError:
    what = "declares" if declared else "sent more than"
    return ServiceError(
        "FILE_TOO_LARGE", f"`{field}` {what} {size} bytes; the limit is {max_bytes} bytes.",
        {"field": field, "size_bytes": size, "limit_bytes": max_bytes},
    )


def _read_body(response: http.client.HTTPResponse, url: str, field: str, max_bytes: int,
               deadline: float) -> TemporaryUploadedFile:
    declared = response.getheader("Content-Length")
    if declared and declared.strip().isdigit() and int(declared) > max_bytes:
        raise _too_large(int(declared), max_bytes, field, declared=True)
    upload = TemporaryUploadedFile(filename_from(url), "application/octet-stream", 0, None)
    size = 0
    try:
        while True:
            _left(deadline, url, field)
            chunk = response.read(CHUNK_BYTES)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:  # never trust Content-Length: count what arrives
                raise _too_large(max_bytes, max_bytes, field, declared=False)
            upload.write(chunk)
        if size == 0:
            raise ServiceError("EMPTY_FILE", f"`{field}` answered an empty body.", {"field": field})
        upload.flush()
        upload.size = size
        upload.seek(0)
        return upload
    except BaseException:
        upload.close()
        raise
