"""Read a file's embedded C2PA manifest and say what validated and what did not, with c2pa's own Reader.

The Reader (c2pa-rs) does the validation: the claim signature, the certificate chain against the trust
anchors we give it, and the hard binding (the hash of every byte outside the manifest). This module only
sorts its status codes into the three questions a customer asks: is the signature good, is the signer
trusted, is the content the one that was signed; and pulls out what the manifest claims (actions, soft
binding, declaration).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO

from media_ops.provenance.formats import readable_mime_type_for
from media_ops.provenance.signing import WATERMARK_DECLARATION_LABEL

# Status-code families of the C2PA specification (section "Validation"), by the question they answer.
_CHECK_PREFIXES: dict[str, tuple[str, ...]] = {
    "signature": ("claimSignature.",),
    "chain": ("signingCredential.",),
    "hash_binding": ("assertion.dataHash.", "assertion.bmffHash.", "assertion.boxesHash.", "assertion.collectionHash."),
    "assertions": ("assertion.hashedURI.", "assertion.missing", "assertion.action.", "assertion.notRedacted"),
}


@dataclass
class ManifestReport:
    """What the Reader found. ``present`` false: no manifest (stripped, never signed, or unsupported)."""

    present: bool
    reason: str = ""  # why not present, or why unreadable
    state: str | None = None  # the SDK's verdict: "Trusted", "Valid" (signature fine, signer not trusted), "Invalid"
    checks: dict[str, str] = field(default_factory=dict)  # signature/chain/hash_binding/assertions -> passed|failed
    failures: list[dict[str, str]] = field(default_factory=list)  # the SDK's failure codes, as it gave them
    label: str | None = None
    title: str | None = None
    claim_generator: str | None = None
    signer: dict[str, Any] | None = None
    actions: list[dict[str, Any]] = field(default_factory=list)
    soft_bindings: list[dict[str, str]] = field(default_factory=list)  # [{alg, message}]
    declaration: dict[str, Any] | None = None

    @property
    def valid(self) -> bool:
        """Signature and hash binding hold (the signer may still be untrusted: see ``trusted``)."""
        return self.present and self.state in ("Trusted", "Valid") and not any(
            self.checks.get(name) == "failed" for name in ("signature", "hash_binding", "assertions")
        )

    @property
    def trusted(self) -> bool:
        return self.present and self.state == "Trusted"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "valid": self.valid, "trusted": self.trusted}


def _checks(results: dict[str, Any]) -> tuple[dict[str, str], list[dict[str, str]]]:
    active = (results or {}).get("activeManifest") or {}
    failures = [
        {"code": item.get("code", ""), "explanation": item.get("explanation", "")}
        for item in active.get("failure") or []
    ]
    success_codes = [item.get("code", "") for item in active.get("success") or []]
    checks: dict[str, str] = {}
    for name, prefixes in _CHECK_PREFIXES.items():
        if any(f["code"].startswith(prefixes) for f in failures):
            checks[name] = "failed"
        elif any(code.startswith(prefixes) for code in success_codes):
            checks[name] = "passed"
        else:
            checks[name] = "not_checked"
    return checks, failures


def _message_from(value: str) -> str | None:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex().upper() if len(raw) == 2 else None


def _claims(manifest: dict[str, Any]) -> dict[str, Any]:
    actions: list[dict[str, Any]] = []
    soft_bindings: list[dict[str, str]] = []
    declaration = None
    for assertion in manifest.get("assertions") or []:
        label = assertion.get("label", "")
        data = assertion.get("data") or {}
        if label.startswith("c2pa.actions"):
            for action in data.get("actions") or []:
                actions.append({
                    key: action[key] for key in ("action", "when", "softwareAgent", "digitalSourceType")
                    if key in action
                })
        elif label.startswith("c2pa.soft-binding"):
            for block in data.get("blocks") or []:
                message = _message_from(str(block.get("value", "")))
                if message:
                    soft_bindings.append({"alg": str(data.get("alg", "")), "message": message})
        elif label == WATERMARK_DECLARATION_LABEL:
            declaration = data
    generator = (manifest.get("claim_generator_info") or [{}])[0]
    signature = manifest.get("signature_info") or {}
    return {
        "label": manifest.get("label"),
        "title": manifest.get("title"),
        "claim_generator": " ".join(str(generator.get(k)) for k in ("name", "version") if generator.get(k)) or None,
        "signer": {k: signature.get(k) for k in ("issuer", "common_name", "alg", "time") if signature.get(k)} or None,
        "actions": actions,
        "soft_bindings": soft_bindings,
        "declaration": declaration,
    }


def read_manifest(stream: BinaryIO, fmt: str, trust_anchors_pem: str = "") -> ManifestReport:
    """Read and validate the manifest embedded in ``stream`` (a file of our format ``fmt``).

    ``trust_anchors_pem``: the CA certificates whose leaves count as trusted; empty: none (a manifest can
    then at best be "Valid", never "Trusted").
    """
    mime = readable_mime_type_for(fmt)
    if mime is None:
        return ManifestReport(present=False, reason=f"The C2PA SDK cannot read manifests from {fmt!r} files.")
    import c2pa

    sdk_settings: dict[str, Any] = {"verify": {"verify_trust": True}}
    if trust_anchors_pem:
        sdk_settings["trust"] = {"trust_anchors": trust_anchors_pem}
    try:
        reader = c2pa.Reader(mime, stream, context=c2pa.Context.from_dict(sdk_settings))
    except c2pa.C2paError.ManifestNotFound:
        return ManifestReport(present=False, reason="The file carries no C2PA manifest.")
    except c2pa.C2paError as exc:
        return ManifestReport(
            present=True, state="Invalid", reason="The manifest could not be read.",
            checks={name: "failed" for name in _CHECK_PREFIXES},
            failures=[{"code": "manifest.unreadable", "explanation": str(exc)[:300]}],
        )
    with reader:
        checks, failures = _checks(reader.get_validation_results() or {})
        return ManifestReport(
            present=True,
            state=reader.get_validation_state(),
            checks=checks,
            failures=failures,
            **_claims(reader.get_active_manifest() or {}),
        )
