"""Where a job's input comes from: an upload in the request, a ``file_url`` fetched now, or a presigned
direct upload (``upload_id``). Each becomes an ``UploadedFile`` that ``jobs.services`` probes and stores
exactly like a plain upload, so every source gets the same checks, codes and all-or-nothing cleanup."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.files.uploadedfile import UploadedFile

from core.errors import ServiceError
from jobs import direct_uploads, remote

if TYPE_CHECKING:
    from accounts.models import Tenant

SOURCE_FIELDS = ("file", "file_url", "upload_id")


@dataclass
class Source:
    """One resolved input: the file to probe, and (direct uploads) where it already lies in storage."""

    upload: UploadedFile
    origin: str  # upload | url | direct
    stored_name: str = ""
    direct_upload_id: Any = None

    @property
    def field(self) -> str:
        """The request field the input came from (errors name it)."""
        return {"upload": "file", "url": "file_url", "direct": "upload_id"}[self.origin]

    def relabel(self, error: ServiceError) -> ServiceError:
        """An error about the probed file names the field the client used (``file_url``, not ``file``)."""
        if error.details.get("field") == "file":
            error.details["field"] = self.field
        return error

    def close(self) -> None:
        """Remove the temporary copy of a fetched or direct upload (a request's own upload is Django's)."""
        if self.origin != "upload":
            self.upload.close()


def check_one_source(data: dict[str, Any]) -> str:
    """The one source field the request used; ``VALIDATION_ERROR`` for none or several."""
    given = [name for name in SOURCE_FIELDS if data.get(name) not in (None, "")]
    if len(given) != 1:
        raise ServiceError(
            "VALIDATION_ERROR",
            "Send exactly one of `file` (an upload), `file_url` or `upload_id`.",
            {"fields": {name: ["exactly one of file, file_url, upload_id"] for name in SOURCE_FIELDS}},
        )
    return given[0]


def resolve(
    tenant: Tenant, *, max_bytes: int, file: UploadedFile | None = None, file_url: str = "",
    upload_id: Any = None,
) -> Source:
    """Turn whichever source was given into a ``Source`` (fetching the URL or the direct upload now)."""
    if file is not None:
        return Source(upload=file, origin="upload")
    if file_url:
        return Source(upload=remote.fetch(file_url, max_bytes=max_bytes), origin="url")
    if upload_id:
        upload, copy = direct_uploads.prepare(tenant, upload_id, max_bytes=max_bytes)
        return Source(upload=copy, origin="direct", stored_name=upload.storage_name, direct_upload_id=upload.pk)
    raise ServiceError("VALIDATION_ERROR", "Missing file upload.", {"fields": {"file": ["required"]}})
