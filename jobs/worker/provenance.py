"""What the worker passes to ``media_ops.provenance``: the signing configuration from the settings and the
tenant's declaration from its provenance profile, read when the job's context is built.

Signing happens in the embed handler, after encoding: the manifest's hard binding must cover the final bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings

from media_ops import provenance
from provenance import selectors as provenance_selectors

if TYPE_CHECKING:
    from jobs.models import Job

SERVICE_VERSION = "1"  # the claim generator's version (the signing service, not a model)


@dataclass(frozen=True)
class JobProvenance:
    """Whether this job's output is signed, and with what; ``disabled_reason`` when it is not."""

    config: provenance.SigningConfig | None
    declaration: provenance.Declaration | None
    soft_binding_alg: str
    disabled_reason: str = ""


def signing_config() -> provenance.SigningConfig:
    return provenance.SigningConfig(
        cert_chain_path=settings.PROVENANCE_SIGNING_CERT_CHAIN,
        private_key_path=settings.PROVENANCE_SIGNING_KEY,
        sign_hook=settings.PROVENANCE_SIGNING_HOOK,
        algorithm=settings.PROVENANCE_SIGNING_ALG,
        tsa_url=settings.PROVENANCE_TSA_URL,
        claim_generator=("AudioSeal Studio", SERVICE_VERSION),
    )


def for_job(job: Job) -> JobProvenance:
    """The provenance settings of an embed job (other kinds get none: nothing of theirs is signed)."""
    from jobs.models import JobKind

    alg = settings.PROVENANCE_SOFT_BINDING_ALG
    if job.kind != JobKind.WATERMARK_EMBED:
        return JobProvenance(None, None, alg, "Only watermarked outputs are signed.")
    if not settings.PROVENANCE_MANIFESTS:
        return JobProvenance(None, None, alg, "Content Credentials are switched off on this server.")
    profile = provenance_selectors.profile_for(job.tenant_id)
    if not profile.manifests_enabled:
        return JobProvenance(None, None, alg, "Content Credentials are switched off for this organisation.")
    declaration = provenance.Declaration(
        organisation=job.tenant.name,
        organisation_id=str(job.tenant_id),
        generator_name=profile.generator_name,
        generator_version=profile.generator_version,
        digital_source_type=profile.digital_source_type,
        statement=profile.statement,
    )
    return JobProvenance(signing_config(), declaration, alg)
