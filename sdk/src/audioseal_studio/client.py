"""The synchronous client of the AudioSeal Studio API (``/api/v1/``), on httpx.

    from audioseal_studio import Client

    with Client(api_key="ask_...", base_url="http://127.0.0.1:8000") as studio:
        job = studio.embed("speech.wav", message="1A2B", wait=60)     # long-polls until final or 60 s
        studio.download_output(job, "marked.wav")
        found = studio.detect("marked.wav", wait=60).result         # a DetectionResult
        print(found.detected, found.message)                         # True 1A2B

What it does for you:

* **Idempotency.** Every job creation sends an ``Idempotency-Key`` (a fresh UUID unless you pass one), and
  a retried creation sends the same key, so a lost answer retried can never create or bill a second job.
* **Retries** (``RetryPolicy``): 429 always, 502/503/504 and connection errors for reads and creations,
  waiting what ``Retry-After`` says, else exponential backoff with jitter.
* **Waiting.** ``wait=N`` asks the server to hold the answer until the job is final (at most 30 s a request,
  the server's cap) and keeps asking until the job is final or N seconds have passed; ``Client.wait`` does
  the same for a job you already have and raises ``WaitTimeoutError`` at its deadline.
* **Downloads** stream to a file (written beside its target and renamed when complete, so a failed download
  leaves no partial file); a ``302`` to object storage is followed without sending the API key there.
* **Pagination.** ``iter_jobs`` follows the listing's cursors; ``list_jobs`` gives one page.

The client is safe to share between threads (the CLI's directory mode does).
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, unquote, urljoin, urlsplit

import httpx

from audioseal_studio._version import __version__
from audioseal_studio.errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    JobFailedError,
    StudioError,
    WaitTimeoutError,
    error_from_response,
)
from audioseal_studio.models import Job, JobPage, Usage, WebhookDelivery
from audioseal_studio.retries import IDEMPOTENCY_HEADER, RetryPolicy

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
API_PREFIX = "/api/v1/"
MAX_SERVER_WAIT = 30.0  # the server holds a `?wait` request at most this long
DEFAULT_WAIT_TIMEOUT = 600.0
MAX_REDIRECTS = 5

# A file to upload: a path, bytes, an open binary file, or (filename, bytes or file).
FileInput = str | os.PathLike | bytes | IO[bytes] | tuple[str, bytes | IO[bytes]]
JobRef = Job | str | uuid.UUID


@dataclass(frozen=True)
class RetryEvent:
    """Told to ``on_retry`` before the client sleeps and sends a request again."""

    attempt: int  # 1 for the first retry
    delay: float  # seconds it is about to sleep
    method: str
    url: str
    status: int | None  # the refused answer's status; None after a connection error
    reason: str  # the error code or the connection error


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


class _Upload:
    """One file part, re-opened (or rewound) for each attempt so that a retry sends the same bytes."""

    def __init__(self, value: FileInput) -> None:
        self.name: str
        self._path: Path | None = None
        self._data: bytes | None = None
        self._stream: IO[bytes] | None = None
        self._start = 0
        if isinstance(value, tuple):
            self.name, content = value
        else:
            content = value
            self.name = ""
        if isinstance(content, str | os.PathLike):
            self._path = Path(content)
            if not self._path.is_file():
                raise StudioError(f"{self._path}: no such file")
            self.name = self.name or self._path.name
        elif isinstance(content, bytes | bytearray):
            self._data = bytes(content)
        elif content.seekable():
            self._stream, self._start = content, content.tell()
        else:  # cannot be rewound: keep the bytes so a retry can resend them
            self._data = content.read()
        if not self.name:
            self.name = Path(getattr(content, "name", "") or "upload").name

    def open(self) -> tuple[str, Any, str]:
        if self._path is not None:
            return self.name, self._path.open("rb"), "application/octet-stream"
        if self._stream is not None:
            self._stream.seek(self._start)
            return self.name, self._stream, "application/octet-stream"
        return self.name, self._data, "application/octet-stream"

    def close(self, part: tuple[str, Any, str]) -> None:
        if self._path is not None:
            part[1].close()


class Client:
    """A client of one AudioSeal Studio server with one API key.

    ``api_key`` defaults to ``$STUDIO_API_KEY`` and ``base_url`` to ``$STUDIO_BASE_URL`` (then
    ``http://127.0.0.1:8000``, the quick start); ``base_url`` may end with ``/api/v1`` or not. ``timeout``
    is per request (a ``wait`` adds its seconds to it). ``transport`` is handed to httpx (tests use it).
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        on_retry: Callable[[RetryEvent], None] | None = None,
        max_connections: int = 20,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        api_key = api_key or os.environ.get("STUDIO_API_KEY")
        if not api_key:
            raise StudioError("No API key: pass one (api_key=, --api-key) or set STUDIO_API_KEY (make run prints one).")
        self.api_key = api_key
        self.base_url = _api_root(base_url or os.environ.get("STUDIO_BASE_URL") or DEFAULT_BASE_URL)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.on_retry = on_retry
        self.sleep: Callable[[float], None] = time.sleep  # replaceable, e.g. to record the waits in tests
        self._origin = _origin(self.base_url)
        self._http = httpx.Client(
            timeout=timeout,
            transport=transport,
            follow_redirects=False,  # redirects are followed here, so the API key never leaves our origin
            headers={"User-Agent": f"audioseal-studio/{__version__} httpx/{httpx.__version__}"},
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    # --- lifecycle -----------------------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- creating jobs -------------------------------------------------------------------------------------

    def embed(
        self,
        file: FileInput,
        *,
        message: str | None = None,
        output_format: str | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        wait: float = 0,
    ) -> Job:
        """Embed a 16-bit watermark (``message``: 4 hex digits; random when omitted, returned in the result)."""
        return self._create(
            "watermark/embed", {"file": file},
            {"message": message, "output_format": output_format},
            callback_url=callback_url, idempotency_key=idempotency_key, wait=wait,
        )

    def detect(
        self, file: FileInput, *, callback_url: str | None = None, idempotency_key: str | None = None,
        wait: float = 0,
    ) -> Job:
        """Detect a watermark; ``job.result`` is a ``DetectionResult`` once it succeeded."""
        return self._create(
            "watermark/detect", {"file": file}, {},
            callback_url=callback_url, idempotency_key=idempotency_key, wait=wait,
        )

    def robustness_report(
        self, file: FileInput, *, original: FileInput | None = None, message: str | None = None,
        callback_url: str | None = None, idempotency_key: str | None = None, wait: float = 0,
    ) -> Job:
        """Attack a watermarked file with the versioned battery; ``original`` adds the quality figures and
        ``message`` names the expected message (default: the one detected in the file). ``job.result`` is
        the report as a dict (its fields: the API schema's ``WatermarkReportResult``)."""
        files = {"file": file, **({"original": original} if original is not None else {})}
        return self._create(
            "watermark/report", files, {"message": message},
            callback_url=callback_url, idempotency_key=idempotency_key, wait=wait,
        )

    def analyze_emotion(
        self,
        file: FileInput,
        *,
        granularity: str = "utterance",
        extract_embedding: bool = False,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        wait: float = 0,
    ) -> Job:
        """Recognise the emotion in speech; with ``extract_embedding`` the output is the embedding (.npy)."""
        return self._create(
            "emotion/analyze", {"file": file},
            {"granularity": granularity, "extract_embedding": extract_embedding},
            callback_url=callback_url, idempotency_key=idempotency_key, wait=wait,
        )

    def beatsync(
        self,
        video: FileInput,
        music: FileInput,
        *,
        trim_silence: bool = False,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        wait: float = 0,
    ) -> Job:
        """Align a dance video to its clean music track; the output is the synced video (MP4)."""
        return self._create(
            "beatsync/align", {"video": video, "music": music}, {"trim_silence": trim_silence},
            callback_url=callback_url, idempotency_key=idempotency_key, wait=wait,
        )

    def _create(
        self,
        path: str,
        files: Mapping[str, FileInput],
        fields: Mapping[str, Any],
        *,
        callback_url: str | None,
        idempotency_key: str | None,
        wait: float,
    ) -> Job:
        started = time.monotonic()
        form = {name: _form_value(value) for name, value in {**fields, "callback_url": callback_url}.items()
                if value is not None}
        first_wait = min(float(wait), MAX_SERVER_WAIT) if wait else 0.0
        response = self._request(
            "POST", path,
            params={"wait": _seconds(first_wait)} if first_wait else None,
            data=form,
            uploads={name: _Upload(value) for name, value in files.items()},
            headers={IDEMPOTENCY_HEADER: idempotency_key or new_idempotency_key()},
            extra_timeout=first_wait,
        )
        job = Job.model_validate(response.json())
        if wait and not job.is_final:
            job = self._poll(job, started + float(wait))
        return job

    # --- reading jobs --------------------------------------------------------------------------------------

    def get_job(self, job: JobRef, *, wait: float = 0) -> Job:
        """Read a job; ``wait`` (0–30 s) holds the answer until the job is final or the seconds pass."""
        wait = min(float(wait), MAX_SERVER_WAIT)
        response = self._request(
            "GET", f"jobs/{_job_id(job)}", params={"wait": _seconds(wait)} if wait else None, extra_timeout=wait
        )
        return Job.model_validate(response.json())

    def wait(self, job: JobRef, *, timeout: float = DEFAULT_WAIT_TIMEOUT, raise_on_failure: bool = False) -> Job:
        """The job once final (long-polling, 30 s a request). Raises ``WaitTimeoutError`` after ``timeout``
        seconds, and with ``raise_on_failure`` ``JobFailedError`` when it failed or was canceled."""
        deadline = time.monotonic() + timeout
        current = job if isinstance(job, Job) else self.get_job(job, wait=min(MAX_SERVER_WAIT, timeout))
        current = self._poll(current, deadline)
        if not current.is_final:
            raise WaitTimeoutError(current, timeout)
        if raise_on_failure and not current.succeeded:
            raise JobFailedError(current)
        return current

    def _poll(self, job: Job, deadline: float) -> Job:
        """Long-poll until the job is final or the deadline passes (then the last reading)."""
        while not job.is_final:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            job = self.get_job(job.id, wait=min(MAX_SERVER_WAIT, max(remaining, 0.1)))
        return job

    def cancel(self, job: JobRef) -> Job:
        """Cancel a queued or running job (409 ``INVALID_STATE`` when it is already final)."""
        return Job.model_validate(self._request("POST", f"jobs/{_job_id(job)}/cancel").json())

    def list_jobs(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        page_size: int | None = None,
        cursor: str | None = None,
    ) -> JobPage:
        """One page of the tenant's jobs, newest first (``page_size`` 1–100, default 20)."""
        params = {"status": status, "kind": kind, "page_size": page_size, "cursor": cursor}
        body = self._request("GET", "jobs", params={k: str(v) for k, v in params.items() if v is not None}).json()
        return JobPage(
            results=[Job.model_validate(item) for item in body.get("results", [])],
            next_cursor=_cursor_of(body.get("next")),
            previous_cursor=_cursor_of(body.get("previous")),
        )

    def iter_jobs(
        self, *, status: str | None = None, kind: str | None = None, page_size: int = 100, limit: int | None = None
    ) -> Iterator[Job]:
        """Every job (or the first ``limit``), newest first, fetching pages as the iteration needs them."""
        cursor: str | None = None
        remaining = limit
        while remaining is None or remaining > 0:
            page = self.list_jobs(status=status, kind=kind, page_size=page_size, cursor=cursor)
            yield from page.results[:remaining]
            if remaining is not None:
                remaining -= min(remaining, len(page.results))
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def deliveries(self, job: JobRef) -> list[WebhookDelivery]:
        """The job's webhook deliveries and their attempts, newest first."""
        body = self._request("GET", f"jobs/{_job_id(job)}/deliveries").json()
        return [WebhookDelivery.model_validate(item) for item in body]

    def usage(self) -> Usage:
        """This billing period's minutes (used, reserved, included), usage per kind and the plan's limits."""
        return Usage.model_validate(self._request("GET", "usage").json())

    # --- downloads -----------------------------------------------------------------------------------------

    def download_output(self, job: JobRef, dest: str | os.PathLike) -> Path:
        """Save the job's output. ``dest`` is a file path, or a directory (the server's file name is used).
        Returns the path written."""
        return self._download(f"jobs/{_job_id(job)}/output", None, Path(dest))

    def download_input(self, job: JobRef, dest: str | os.PathLike, *, role: str | None = None) -> Path:
        """Save the job's uploaded input (``role="music"``: a beat-sync job's music)."""
        return self._download(f"jobs/{_job_id(job)}/input", {"role": role} if role else None, Path(dest))

    def read_output(self, job: JobRef) -> bytes:
        """The job's output in memory."""
        response = self._open_download(f"jobs/{_job_id(job)}/output", None)
        try:
            return response.read()
        finally:
            response.close()

    def _download(self, path: str, params: dict[str, str] | None, dest: Path) -> Path:
        response = self._open_download(path, params)
        try:
            target = dest / (_filename(response) or Path(path).parent.name) if dest.is_dir() else dest
            partial = target.with_name(f".{target.name}.part")
            try:
                with partial.open("wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
                os.replace(partial, target)
            except httpx.TransportError as exc:  # the connection broke mid-file
                partial.unlink(missing_ok=True)
                raise _connection_error(exc, "GET", str(response.url)) from exc
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
        finally:
            response.close()
        return target

    def _open_download(self, path: str, params: dict[str, str] | None) -> httpx.Response:
        """The streamed file response, after following redirects (object storage's presigned URLs)."""
        response = self._request("GET", path, params=params, stream=True)
        for _ in range(MAX_REDIRECTS):
            if not response.is_redirect:
                return response
            location = urljoin(str(response.url), response.headers["Location"])
            response.close()
            response = self._request("GET", location, stream=True)
        response.close()
        raise APIError("TOO_MANY_REDIRECTS", f"More than {MAX_REDIRECTS} redirects downloading {path}.",
                       status=response.status_code)

    # --- the one place requests are sent -------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        uploads: Mapping[str, _Upload] | None = None,
        headers: Mapping[str, str] | None = None,
        extra_timeout: float = 0.0,
        stream: bool = False,
    ) -> httpx.Response:
        """Send with the retry policy; a 2xx/3xx response, or the ``APIError`` of the last refusal.

        ``path`` is relative to ``/api/v1/``, or an absolute URL (a redirect): the API key is only sent to
        the configured server's origin."""
        url = path if "://" in path else self.base_url + path
        send_headers = dict(headers or {})
        if _origin(url) == self._origin:
            send_headers["Authorization"] = f"Bearer {self.api_key}"
        timeout = httpx.Timeout(self.timeout + extra_timeout, connect=min(self.timeout, 10.0))
        attempt = 0
        while True:
            parts = {name: upload.open() for name, upload in (uploads or {}).items()}
            try:
                request = self._http.build_request(
                    method, url, params=params, data=dict(data) if data else None, files=parts or None,
                    headers=send_headers, timeout=timeout,
                )
                try:
                    response = self._http.send(request, stream=stream)
                except httpx.TransportError as exc:
                    if attempt >= self.retry.max_retries or not self.retry.is_repeatable(request):
                        raise _connection_error(exc, method, url) from exc
                    delay, status, reason = self.retry.backoff(attempt), None, f"{type(exc).__name__}: {exc}"
                else:
                    if response.status_code < 400:
                        return response
                    if stream:
                        response.read()
                        response.close()
                    error = error_from_response(response)
                    delay = self.retry.delay_for(response, attempt)
                    if (attempt >= self.retry.max_retries or delay is None
                            or not self.retry.should_retry_status(request, response)):
                        raise error
                    status, reason = response.status_code, error.code
            finally:
                for name, part in parts.items():
                    uploads[name].close(part)  # type: ignore[index]
            attempt += 1
            if self.on_retry is not None:
                self.on_retry(RetryEvent(attempt, delay, method, url, status, reason))
            self.sleep(delay)


# --- helpers -------------------------------------------------------------------------------------------------


def _api_root(base_url: str) -> str:
    base = base_url.rstrip("/")
    if base.endswith(API_PREFIX.rstrip("/")):
        base = base[: -len(API_PREFIX.rstrip("/"))]
    return base + API_PREFIX


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _job_id(job: JobRef) -> str:
    return job.id if isinstance(job, Job) else str(job)


def _form_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _seconds(value: float) -> str:
    return f"{value:g}"


def _cursor_of(link: str | None) -> str | None:
    """The ``cursor`` parameter of a listing's ``next``/``previous`` link (a full URL of the server's host,
    which may not be the host we talk to behind a proxy: only the cursor is reused)."""
    if not link:
        return None
    values = parse_qs(urlsplit(link).query).get("cursor")
    return values[0] if values else None


_FILENAME_STAR = re.compile(r"filename\*\s*=\s*(?:UTF-8|utf-8)''([^;]+)")
_FILENAME = re.compile(r'filename\s*=\s*"?([^";]+)"?')


def _filename(response: httpx.Response) -> str | None:
    """The file name of ``Content-Disposition`` (RFC 6266), reduced to a bare name (no directories)."""
    header = response.headers.get("Content-Disposition", "")
    match = _FILENAME_STAR.search(header)
    name = unquote(match.group(1)) if match else (m.group(1) if (m := _FILENAME.search(header)) else "")
    name = Path(name.replace("\\", "/")).name
    return name if name not in ("", ".", "..") else None


def _connection_error(exc: httpx.TransportError, method: str, url: str) -> APIConnectionError:
    cls = APITimeoutError if isinstance(exc, httpx.TimeoutException) else APIConnectionError
    return cls(f"{method} {url}: {type(exc).__name__}: {exc}")
