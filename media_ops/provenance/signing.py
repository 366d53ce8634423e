"""Sign a watermarked output with a C2PA manifest that names its input, the watermark and who made it.

The manifest says, verifiably by anyone with the C2PA SDK: "this file was opened from <input> (an ingredient,
hashed), watermarked by <engine> <model version> at <time>, and the watermark carries <message> under the
soft-binding algorithm <alg>; the organisation <tenant> declares it was made with <generator>". The hard
binding (``c2pa.hash.data``, added by the SDK) covers every byte outside the manifest, so any edit to the
audio breaks it; the soft binding is what survives a re-encode: the watermark's message, looked up in the
tenant's registry.

c2pa-rs checks the action semantics when it signs (see MODELS.md): the first action must be ``c2pa.opened``
(or ``created``), ``opened`` needs an ingredient, and ``c2pa.watermarked`` needs a ``c2pa.soft-binding``
assertion. A self-signed leaf is refused: the key must belong to a leaf issued by a CA (``devchain`` makes
one for development).

Pure library code: the caller (the worker) passes a ``SigningConfig`` built from its settings.
"""

from __future__ import annotations

import base64
import importlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from media_ops.provenance.formats import INGREDIENT_MIME_TYPES, mime_type_for, unsignable_reason

logger = logging.getLogger(__name__)

WATERMARK_DECLARATION_LABEL = "com.audioseal-studio.declaration"
"""Our own assertion: the tenant's declared organisation, generator and statement (C2PA allows labels in a
reverse-domain namespace for assertions it does not standardise)."""

NO_TSA_NOTE = (
    "No RFC 3161 timestamp authority is configured: the time is the signer's own claim, not a third party's "
    "countersignature, and the manifest stops validating as 'inside validity' once the certificate expires."
)


@dataclass(frozen=True)
class SigningConfig:
    """Where the signing credentials are. ``sign_hook`` (a dotted path to ``callable(data: bytes) -> bytes``)
    replaces the private key file with a KMS or HSM that signs on our behalf: for ES256 it must return the
    raw 64-byte ``r || s`` signature of ``data`` (SHA-256), which is what COSE carries."""

    cert_chain_path: str = ""  # PEM: the signing leaf first, then any intermediates (not the root)
    private_key_path: str = ""  # PEM (PKCS#8) of the leaf's key; unused when sign_hook is set
    sign_hook: str = ""
    algorithm: str = "es256"
    tsa_url: str = ""  # RFC 3161 timestamp authority; "" = none (offline)
    claim_generator: tuple[str, str] = ("AudioSeal Studio", "1")  # (name, version) of the signing service

    def problem(self) -> str | None:
        """Why this configuration cannot sign (told to the job's owner), or None."""
        if not self.cert_chain_path or not os.path.isfile(self.cert_chain_path):
            return "No signing certificate is configured on this server."
        if not self.sign_hook and (not self.private_key_path or not os.path.isfile(self.private_key_path)):
            return "No signing key is configured on this server."
        return None


@dataclass(frozen=True)
class WatermarkBinding:
    """The watermark this output carries, as the soft binding and the ``c2pa.watermarked`` action say it."""

    engine: str  # the watermarking model family, e.g. "AudioSeal"
    model_name: str
    model_version: str
    message: str  # 4 hex digits, the 16-bit payload
    algorithm: str  # the soft-binding algorithm identifier

    @property
    def value(self) -> str:
        """The soft-binding value: the message's two bytes, base64 (as the C2PA soft-binding block holds it)."""
        return base64.b64encode(bytes.fromhex(self.message)).decode("ascii")


@dataclass(frozen=True)
class Declaration:
    """What the tenant declares about its content (its provenance settings), signed into the manifest."""

    organisation: str
    organisation_id: str = ""  # opaque: lets verify tell the tenant's own outputs from another tenant's
    generator_name: str = ""
    generator_version: str = ""
    digital_source_type: str = ""  # an IPTC digital source type URI, e.g. …/trainedAlgorithmicMedia
    statement: str = ""

    def as_assertion(self) -> dict[str, Any]:
        data: dict[str, Any] = {"organisation": self.organisation}
        if self.organisation_id:
            data["organisation_id"] = self.organisation_id
        if self.generator_name:
            data["generator"] = {"name": self.generator_name, "version": self.generator_version or None}
        if self.digital_source_type:
            data["digital_source_type"] = self.digital_source_type
        if self.statement:
            data["statement"] = self.statement
        return {"label": WATERMARK_DECLARATION_LABEL, "data": data}


@dataclass
class SignRequest:
    """One output to sign: the file (signed in place), what it was made from, and what it claims."""

    output_path: Path
    output_format: str
    input_path: Path
    input_format: str
    title: str
    binding: WatermarkBinding
    declaration: Declaration
    when: datetime = field(default_factory=lambda: datetime.now(UTC))


def manifest_definition(req: SignRequest, claim_generator: tuple[str, str]) -> dict[str, Any]:
    """The manifest the Builder signs (ingredient added separately, referenced by its label ``input``)."""
    when = req.when.astimezone(UTC).isoformat().replace("+00:00", "Z")
    opened: dict[str, Any] = {"action": "c2pa.opened", "when": when, "parameters": {"ingredientIds": ["input"]}}
    if req.declaration.digital_source_type:
        opened["digitalSourceType"] = req.declaration.digital_source_type
    watermarked = {
        "action": "c2pa.watermarked",
        "when": when,
        "softwareAgent": {"name": req.binding.engine, "version": req.binding.model_version},
        "parameters": {
            "description": f"{req.binding.model_name} watermark carrying message {req.binding.message}",
        },
    }
    soft_binding = {
        "label": "c2pa.soft-binding",
        "data": {"alg": req.binding.algorithm, "blocks": [{"scope": {}, "value": req.binding.value}]},
    }
    return {
        "claim_generator_info": [{"name": claim_generator[0], "version": claim_generator[1]}],
        "title": req.title,
        "format": mime_type_for(req.output_format),
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": [opened, watermarked]}},
            soft_binding,
            req.declaration.as_assertion(),
        ],
    }


def _load_hook(dotted: str) -> Callable[[bytes], bytes]:
    module_name, _, attr = dotted.rpartition(".")
    if not module_name:
        raise ValueError(f"PROVENANCE_SIGNING_HOOK must be a dotted path, got {dotted!r}")
    hook = getattr(importlib.import_module(module_name), attr)
    if not callable(hook):
        raise ValueError(f"{dotted} is not callable")
    return hook


def make_signer(config: SigningConfig) -> Any:
    """A ``c2pa.Signer`` from the key file, or from the hook (the key never enters this process)."""
    import c2pa

    chain = Path(config.cert_chain_path).read_bytes()
    tsa = config.tsa_url or None
    if config.sign_hook:
        alg = c2pa.C2paSigningAlg[config.algorithm.upper()]
        return c2pa.Signer.from_callback(_load_hook(config.sign_hook), alg, chain.decode("ascii"), tsa)
    key = Path(config.private_key_path).read_bytes()
    info = c2pa.C2paSignerInfo(config.algorithm.lower().encode(), chain, key, tsa.encode() if tsa else None)
    return c2pa.Signer.from_info(info)


def sign_output(req: SignRequest, config: SigningConfig) -> dict[str, Any]:
    """Embed a signed manifest into ``req.output_path`` (replaced atomically) and describe it for the result.

    Never raises for a format the SDK cannot sign or a server without credentials: the output stays as it
    is, watermarked, and the answer says ``signed: false`` with the reason. A signing failure of the SDK
    itself is logged with its cause and reported without it (it may name server paths).
    """
    mime = mime_type_for(req.output_format)
    if mime is None:
        return {"signed": False, "reason": unsignable_reason(req.output_format)}
    problem = config.problem()
    if problem:
        return {"signed": False, "reason": problem}

    import c2pa

    tmp_path = req.output_path.with_name(req.output_path.name + ".signing")
    try:
        signer = make_signer(config)
        builder = c2pa.Builder(manifest_definition(req, config.claim_generator))
        with open(req.input_path, "rb") as source:
            builder.add_ingredient(
                {"title": f"input.{req.input_format}", "relationship": "parentOf", "label": "input"},
                INGREDIENT_MIME_TYPES.get(req.input_format, "application/octet-stream"),
                source,
            )
        with open(req.output_path, "rb") as source, open(tmp_path, "wb") as dest:
            builder.sign(signer, mime, source, dest)
        os.replace(tmp_path, req.output_path)
    except (c2pa.C2paError, OSError, ValueError, KeyError, ImportError, AttributeError):
        logger.exception("C2PA signing of %s failed", req.output_path.name)
        tmp_path.unlink(missing_ok=True)
        return {"signed": False, "reason": "Signing failed on the server; the output is watermarked but unsigned."}
    return {
        "signed": True,
        "format": mime,
        "soft_binding": {"alg": req.binding.algorithm, "message": req.binding.message},
        "timestamp": {
            "claimed": req.when.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "tsa": config.tsa_url or None,
            **({} if config.tsa_url else {"note": NO_TSA_NOTE}),
        },
    }
