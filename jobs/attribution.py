"""The jobs side of provenance: embed registers messages, verify answers "who made this".

* **Embed** with ``message=auto`` (or a ``label`` and no message) takes the next free message of the tenant's
  registry inside the submission's transaction (``Submission.prepare``): a refused upload keeps no entry.
* **Verify** reads the upload's C2PA manifest in the request (the Reader is fast and the upload is already
  bounded by the plan's limits). A manifest whose signature and hash binding hold answers at once
  (``path: manifest``). Otherwise (stripped by a re-encode, never signed, or failing validation) the answer
  comes from the watermark: a ``watermark_detect`` job (the model lives in the workers, not in web
  processes; it is queued, rate-limited and billed as any detection), whose regions' messages are looked up
  in the caller's registry (``path: watermark``, or ``none`` when no watermark is found). The manifest's
  report travels in the job's params, so the answer can be rebuilt from the job later.

Registry entries are always the caller's own (``provenance.selectors``): a message another tenant
registered is never revealed, even when the same 16 bits decode here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.urls import reverse

from billing import selectors as billing_selectors
from jobs import services
from jobs.models import FINAL_STATUSES, Job, JobKind, JobStatus
from media_ops import provenance as media_provenance
from provenance import selectors as provenance_selectors
from provenance import services as provenance_services

if TYPE_CHECKING:
    from django.core.files.uploadedfile import UploadedFile

AUTO = "auto"
VERIFY_PARAM = "verification"  # the detect job's params key holding the manifest report


# --- embed ----------------------------------------------------------------------------------------------------


def allocates(data: dict[str, Any]) -> bool:
    """Whether an embed request asks the registry to pick its message: ``auto``, or a label without one."""
    message = data.get("message") or ""
    return message == AUTO or (not message and bool((data.get("label") or "").strip()))


def registration_step(user: Any, data: dict[str, Any]) -> Callable[[Job], None] | None:
    """The ``Submission.prepare`` step of an embed request: register the job's message with its label and
    metadata (the next free one for ``auto``; ``MESSAGE_TAKEN`` when a given one is already registered), or
    None when the request names no label and no ``auto``."""
    if not allocates(data) and not (data.get("label") or "").strip():
        return None
    metadata = data.get("metadata")

    def register(job: Job) -> None:
        given = None if allocates(data) else job.params["message"]
        entry = provenance_services.register_message(
            job.tenant,
            message=given,
            label=(data.get("label") or "").strip() or f"Embed {job.input.get('filename') or job.id}",
            metadata=metadata,
            user=user,
            job_id=job.id,
        )
        job.params = {**job.params, "message": entry.message}

    return register


# --- verify ---------------------------------------------------------------------------------------------------


def _trust_anchors() -> str:
    path = Path(settings.PROVENANCE_TRUST_ANCHORS) if settings.PROVENANCE_TRUST_ANCHORS else None
    return path.read_text() if path and path.is_file() else ""


def read_upload_manifest(upload: UploadedFile, fmt: str) -> media_provenance.ManifestReport:
    """The upload's manifest, validated against the configured trust anchors."""
    upload.seek(0)
    try:
        return media_provenance.read_manifest(upload.file, fmt, _trust_anchors())
    finally:
        upload.seek(0)


def manifest_report(sub: services.Submission) -> dict[str, Any]:
    """Probe the upload (the plan's limits, the real format: bad input is refused here, before anything is
    written) and read its manifest; ``report["valid"]`` decides whether the watermark must answer."""
    upload = sub.files["file"]
    info = services.probe_upload(JobKind.WATERMARK_DETECT, upload, "file", sub.tenant, limits=_limits(sub))
    return read_upload_manifest(upload, info["format"]).to_dict()


def submit_detection(sub: services.Submission, manifest: dict[str, Any]) -> Job:
    """The watermark detection that answers for a file whose manifest does not validate; the manifest's
    report rides in its params, so the answer can be rebuilt from the job (``verification_for_job``)."""
    sub.params = {**sub.params, VERIFY_PARAM: {"manifest": manifest}}
    return services.submit(sub)


def _limits(sub: services.Submission) -> billing_selectors.Limits:
    """The plan's limits, read once: the submission that may follow reuses the same standing."""
    standing = sub.standing or billing_selectors.standing_for(sub.tenant)
    sub.standing = standing
    return standing.limits


def _manifest_attribution(tenant_id: Any, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """From a valid manifest: the soft binding's message (ours) and, when the manifest was signed for the
    caller (its declaration's ``organisation_id``), the caller's registry entry for it. Another tenant's
    output gets no entry even where the caller registered the same 16 bits: they mean something else there."""
    ours = [b for b in manifest.get("soft_bindings") or [] if b.get("alg") == settings.PROVENANCE_SOFT_BINDING_ALG]
    if not ours:
        return None
    message = ours[0]["message"]
    signed_for = (manifest.get("declaration") or {}).get("organisation_id")
    registry = None
    if signed_for == str(tenant_id):
        registry = provenance_selectors.entries_by_message(tenant_id, [message]).get(message)
    return {
        "source": "manifest", "message": message, "registry": registry,
        "signed_for_you": signed_for == str(tenant_id),
    }


def _watermark_part(job: Job, request: Any) -> dict[str, Any]:
    url = reverse("api:job-detail", kwargs={"pk": job.pk})
    part: dict[str, Any] = {
        "job_id": str(job.pk),
        "job_url": request.build_absolute_uri(url) if request is not None else url,
        "status": job.status,
        "detected": None,
        "message": None,
        "segments": [],
        "error": {"code": job.error_code, "message": job.error_message} if job.error_code else None,
    }
    if job.status == JobStatus.SUCCEEDED and job.result:
        result = provenance_selectors.attribute_detection(job.tenant_id, job.result) or {}
        part.update(
            detected=bool(result.get("detected")),
            message=result.get("message"),
            registry=result.get("registry"),
            segments=[
                {key: s.get(key) for key in ("start_seconds", "end_seconds", "message", "confidence", "registry")}
                for s in result.get("segments") or []
            ],
        )
    return part


def verification_json(tenant_id: Any, manifest: dict[str, Any], job: Job | None, request: Any = None) -> dict[str, Any]:
    """The verify answer: which ``path`` answered, the manifest's report (what failed validation), the
    watermark detection's regions (when it ran) and the ``attribution`` the caller may see."""
    if job is None:
        return {
            "path": "manifest", "status": "complete", "manifest": manifest, "watermark": None,
            "attribution": _manifest_attribution(tenant_id, manifest),
        }
    watermark = _watermark_part(job, request)
    url = reverse("api:provenance-verification", kwargs={"pk": job.pk})
    watermark["verification_url"] = request.build_absolute_uri(url) if request is not None else url
    if job.status not in FINAL_STATUSES:
        return {"path": "watermark", "status": "pending", "manifest": manifest, "watermark": watermark,
                "attribution": None}
    attribution = None
    if watermark["detected"]:
        attribution = {"source": "watermark", "message": watermark["message"], "registry": watermark.get("registry")}
    return {
        "path": "watermark" if watermark["detected"] else "none",
        "status": "complete" if job.status == JobStatus.SUCCEEDED else "failed",
        "manifest": manifest,
        "watermark": watermark,
        "attribution": attribution,
    }


def verification_for_job(job: Job, request: Any = None) -> dict[str, Any]:
    """A verification rebuilt from its detect job (the dashboard's result page, a later poll)."""
    manifest = (job.params or {}).get(VERIFY_PARAM, {}).get("manifest") or {"present": False}
    return verification_json(job.tenant_id, manifest, job, request)
