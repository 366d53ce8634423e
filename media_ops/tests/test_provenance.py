"""media_ops.provenance without Django: signing with a key file or a KMS-style hook, the formats the SDK
cannot sign, a server without credentials, and what the Reader reports for an untrusted signer."""

from __future__ import annotations

import shutil
from pathlib import Path

import c2pa
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from media_ops import provenance

FIXTURES = Path(__file__).resolve().parent / "fixtures"
HOOK_CALLS: list[int] = []
_HOOK_KEY: list[ec.EllipticCurvePrivateKey] = []


def kms_sign(data: bytes) -> bytes:
    """Stands in for a KMS: signs with a key this process never hands to c2pa (raw r || s, as COSE wants)."""
    HOOK_CALLS.append(len(data))
    r, s = decode_dss_signature(_HOOK_KEY[0].sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> provenance.DevChain:
    return provenance.ensure_dev_chain(tmp_path_factory.mktemp("chain"))


def _request(tmp_path: Path, fixture: str, fmt: str) -> provenance.SignRequest:
    out = tmp_path / f"out.{fmt}"
    shutil.copy(FIXTURES / fixture, out)
    return provenance.SignRequest(
        output_path=out, output_format=fmt, input_path=FIXTURES / fixture, input_format=fmt, title=out.name,
        binding=provenance.WatermarkBinding("AudioSeal", "demo", "abc123", "1A2B", "com.example.test.1"),
        declaration=provenance.Declaration("Acme"),
    )


def test_the_dev_chain_is_made_once_and_reused(chain):
    again = provenance.ensure_dev_chain(chain.ca_path.parent)
    assert again.created is False and again.ca_path.read_bytes() == chain.ca_path.read_bytes()
    assert oct(chain.key_path.stat().st_mode & 0o777) == "0o600"


def test_sign_with_key_file_and_read_back(chain, tmp_path):
    req = _request(tmp_path, "speech_16k_mono.wav", "wav")
    answer = provenance.sign_output(req, provenance.SigningConfig(str(chain.chain_path), str(chain.key_path)))
    assert answer["signed"] is True and answer["soft_binding"] == {"alg": "com.example.test.1", "message": "1A2B"}
    assert answer["timestamp"]["tsa"] is None and "timestamp authority" in answer["timestamp"]["note"]

    with open(req.output_path, "rb") as f:
        trusted = provenance.read_manifest(f, "wav", chain.ca_path.read_text())
    assert trusted.trusted and trusted.valid
    assert trusted.soft_bindings == [{"alg": "com.example.test.1", "message": "1A2B"}]
    with open(req.output_path, "rb") as f:
        unknown = provenance.read_manifest(f, "wav", "")  # nobody told the verifier about our CA
    assert unknown.valid and not unknown.trusted and unknown.checks["chain"] == "failed"
    assert "signingCredential.untrusted" in [x["code"] for x in unknown.failures]


def test_sign_through_a_kms_style_hook(chain, tmp_path):
    key = serialization.load_pem_private_key(chain.key_path.read_bytes(), password=None)
    _HOOK_KEY[:] = [key]
    HOOK_CALLS.clear()
    req = _request(tmp_path, "speech.mp3", "mp3")
    config = provenance.SigningConfig(str(chain.chain_path), sign_hook=f"{__name__}.kms_sign")
    assert provenance.sign_output(req, config)["signed"] is True
    assert HOOK_CALLS, "the hook signed the claim"
    reader = c2pa.Reader("audio/mpeg", open(req.output_path, "rb"),  # noqa: SIM115 - the Reader closes it
                         context=c2pa.Context.from_dict({"trust": {"trust_anchors": chain.ca_path.read_text()},
                                                         "verify": {"verify_trust": True}}))
    assert reader.get_validation_state() == "Trusted"


@pytest.mark.parametrize(("fixture", "fmt"), [("speech.ogg", "ogg"), ("speech_44k_stereo.flac", "flac")])
def test_formats_the_sdk_cannot_sign_are_named_and_left_alone(chain, tmp_path, fixture, fmt):
    req = _request(tmp_path, fixture, fmt)
    before = req.output_path.read_bytes()
    answer = provenance.sign_output(req, provenance.SigningConfig(str(chain.chain_path), str(chain.key_path)))
    assert answer == {"signed": False, "reason": provenance.unsignable_reason(fmt)}
    assert req.output_path.read_bytes() == before


def test_no_credentials_or_a_broken_hook_leave_the_output_unsigned(chain, tmp_path):
    req = _request(tmp_path, "speech_16k_mono.wav", "wav")
    before = req.output_path.read_bytes()
    assert provenance.sign_output(req, provenance.SigningConfig())["reason"] == (
        "No signing certificate is configured on this server."
    )
    broken = provenance.SigningConfig(str(chain.chain_path), sign_hook="no.such.module.sign")
    answer = provenance.sign_output(req, broken)
    assert answer["signed"] is False and "no.such" not in answer["reason"]  # server details stay in the log
    assert req.output_path.read_bytes() == before and not list(tmp_path.glob("*.signing"))


def test_a_self_signed_leaf_is_refused(tmp_path):
    """c2pa-rs will not sign with a self-signed certificate (why the dev chain has a CA)."""
    import datetime

    from cryptography import x509
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "self")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    req = _request(tmp_path, "speech_16k_mono.wav", "wav")
    answer = provenance.sign_output(req, provenance.SigningConfig(str(tmp_path / "c.pem"), str(tmp_path / "k.pem")))
    assert answer["signed"] is False


@pytest.mark.parametrize(("fixture", "fmt"), [("speech_16k_mono.wav", "wav"), ("speech.mp3", "mp3"),
                                              ("speech.m4a", "m4a")])
def test_a_signed_file_decodes_to_the_same_samples(chain, tmp_path, fixture, fmt):
    from media_ops import audio

    req = _request(tmp_path, fixture, fmt)
    assert provenance.sign_output(req, provenance.SigningConfig(str(chain.chain_path), str(chain.key_path)))["signed"]
    assert req.output_path.read_bytes() != (FIXTURES / fixture).read_bytes()  # the manifest is in there
    signed, signed_rate = audio.decode(req.output_path)
    original, rate = audio.decode(FIXTURES / fixture)
    assert signed_rate == rate and (signed == original).all()
