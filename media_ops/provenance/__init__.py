"""Content Credentials (C2PA) for watermarked outputs: sign a manifest bound to the watermark, read one back.

``signing`` builds and embeds the manifest (input as ingredient, ``c2pa.watermarked``, the soft binding that
holds the watermark's message, the tenant's declaration); ``reading`` validates one with the SDK's Reader;
``formats`` says which containers the SDK can carry a manifest in; ``devchain`` makes a development CA and
signer. Pure library code: no Django, settings are passed in.
"""

from __future__ import annotations

from media_ops.provenance.devchain import DevChain, ensure_dev_chain
from media_ops.provenance.formats import SIGNABLE_MIME_TYPES, mime_type_for, unsignable_reason
from media_ops.provenance.reading import ManifestReport, read_manifest
from media_ops.provenance.signing import (
    NO_TSA_NOTE,
    Declaration,
    SigningConfig,
    SignRequest,
    WatermarkBinding,
    manifest_definition,
    sign_output,
)

__all__ = [
    "NO_TSA_NOTE",
    "SIGNABLE_MIME_TYPES",
    "Declaration",
    "DevChain",
    "ManifestReport",
    "SignRequest",
    "SigningConfig",
    "WatermarkBinding",
    "ensure_dev_chain",
    "manifest_definition",
    "mime_type_for",
    "read_manifest",
    "sign_output",
    "unsignable_reason",
]
