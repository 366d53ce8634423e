"""Content Credentials end to end through the API, with c2pa's own ``Reader`` as the independent validator:
a signed output validates, a tampered sample fails the hash binding, a re-encoded copy loses the manifest but
is still attributed through the watermark and the registry, and another tenant's entry is never revealed.

Real PostgreSQL, Redis, the worker code and the demo AudioSeal checkpoints, as the watermark API tests."""

from __future__ import annotations

import base64
import io

import c2pa
import numpy as np
import pytest

from jobs.models import Job
from media_ops import audio
from media_ops.provenance import unsignable_reason
from provenance.models import RegisteredMessage
from testing.assertions import assert_error
from testing.uploads import FIXTURES, stored_files, upload

pytestmark = pytest.mark.django_db(transaction=True)

EMBED = "/api/v1/watermark/embed"
VERIFY = "/api/v1/provenance/verify"
MESSAGES = "/api/v1/provenance/messages"
MIME = {"wav": "audio/wav", "mp3": "audio/mpeg", "m4a": "audio/mp4"}


def _embed(client, run_worker, fixture: str, **data) -> tuple[dict, bytes]:
    response = client.post(EMBED, {"file": upload(fixture), **data}, format="multipart")
    assert response.status_code == 202, response.json()
    run_worker()
    job = client.get(f"/api/v1/jobs/{response.json()['id']}").json()
    assert job["status"] == "succeeded", job
    output = client.get(f"/api/v1/jobs/{job['id']}/output")
    return job, b"".join(output.streaming_content)


def _reader(data: bytes, mime: str, ca_pem: str) -> c2pa.Reader:
    """c2pa's Reader, told to trust the development CA (and nothing else)."""
    context = c2pa.Context.from_dict({"verify": {"verify_trust": True}, "trust": {"trust_anchors": ca_pem}})
    return c2pa.Reader(mime, io.BytesIO(data), context=context)


def _verify(client, data: bytes, name: str, wait: int = 0) -> dict:
    response = client.post(f"{VERIFY}?wait={wait}", {"file": upload(name, content=data)}, format="multipart")
    assert response.status_code == 200, response.json()
    return response.json()


def _verify_via_watermark(client, run_worker, data: bytes, name: str) -> dict:
    """Verify a file whose manifest does not validate: the answer waits on a detect job; run it, read back."""
    pending = _verify(client, data, name)
    assert pending["status"] == "pending" and pending["path"] == "watermark", pending
    run_worker()
    answer = client.get(pending["watermark"]["verification_url"]).json()
    assert answer["status"] == "complete", answer
    return answer


@pytest.mark.parametrize("fixture", ["speech_16k_mono.wav", "speech.mp3", "speech.m4a"])
def test_a_signed_output_validates_with_the_c2pa_reader(api_client, run_worker, dev_signing, fixture):
    fmt = audio.sniff_format(FIXTURES / fixture)
    job, data = _embed(api_client, run_worker, fixture, message="auto", label="Spring campaign",
                       metadata='{"voice": "nova", "end_user": "u-42"}')
    message = job["result"]["message"]
    assert job["result"]["provenance"]["signed"] is True, job["result"]["provenance"]
    assert job["result"]["provenance"]["timestamp"]["tsa"] is None  # offline: the time is the signer's claim

    reader = _reader(data, MIME[fmt], (dev_signing / "dev-ca.pem").read_text())
    assert reader.get_validation_state() == "Trusted", reader.get_validation_results()
    manifest = reader.get_active_manifest()
    actions = next(a for a in manifest["assertions"] if a["label"].startswith("c2pa.actions"))["data"]["actions"]
    assert [a["action"] for a in actions] == ["c2pa.opened", "c2pa.watermarked"]
    assert actions[1]["softwareAgent"]["version"] == job["model"]["version"]
    assert manifest["ingredients"][0]["relationship"] == "parentOf"
    binding = next(a for a in manifest["assertions"] if a["label"] == "c2pa.soft-binding")["data"]
    assert bytes.fromhex(message) == base64.b64decode(binding["blocks"][0]["value"])
    # The signed file is still the same audio (the manifest sits in its own chunk/block/frame/box).
    original, _ = audio.decode(FIXTURES / fixture)
    path = dev_signing.parent / f"signed-{fixture}"
    path.write_bytes(data)
    assert audio.sniff_format(path) == fmt and audio.decode(path)[0].shape == original.shape

    answer = _verify(api_client, data, f"signed-{fixture}")
    assert answer["path"] == "manifest" and answer["status"] == "complete" and answer["watermark"] is None
    assert answer["manifest"]["valid"] is True and answer["manifest"]["trusted"] is True
    assert answer["manifest"]["checks"] == {
        "signature": "passed", "chain": "passed", "hash_binding": "passed", "assertions": "passed"
    }
    assert answer["attribution"]["source"] == "manifest" and answer["attribution"]["message"] == message
    assert answer["attribution"]["registry"]["label"] == "Spring campaign"
    assert answer["attribution"]["registry"]["metadata"] == {"voice": "nova", "end_user": "u-42"}
    assert Job.objects.count() == 1  # a valid manifest answers without a detection job


def test_a_tampered_sample_fails_the_hash_binding(api_client, run_worker, dev_signing):
    job, data = _embed(api_client, run_worker, "speech_16k_mono.wav", message="auto", label="Tamper test")
    tampered = bytearray(data)
    tampered[5000] ^= 0x55  # one byte of PCM in the data chunk, far from the manifest
    reader = _reader(bytes(tampered), "audio/wav", (dev_signing / "dev-ca.pem").read_text())
    assert reader.get_validation_state() == "Invalid"
    failures = reader.get_validation_results()["activeManifest"]["failure"]
    assert "assertion.dataHash.mismatch" in [f["code"] for f in failures]

    answer = _verify_via_watermark(api_client, run_worker, bytes(tampered), "tampered.wav")
    assert answer["manifest"]["present"] is True and answer["manifest"]["valid"] is False
    assert answer["manifest"]["checks"]["hash_binding"] == "failed"
    assert answer["manifest"]["checks"]["signature"] == "passed"  # the claim itself is intact
    assert "assertion.dataHash.mismatch" in [f["code"] for f in answer["manifest"]["failures"]]
    # The watermark still holds: the answer comes from it (and says so).
    assert answer["path"] == "watermark"
    assert answer["attribution"] == {
        "source": "watermark", "message": job["result"]["message"],
        "registry": answer["attribution"]["registry"],
    }
    assert answer["attribution"]["registry"]["label"] == "Tamper test"


def _reencoded_mp3(data: bytes, tmp_path) -> bytes:
    """Decode the signed WAV and encode it again as MP3 with PyAV (what an upload platform does)."""
    src = tmp_path / "signed.wav"
    src.write_bytes(data)
    samples, rate = audio.decode(src)
    out = tmp_path / "reencoded.mp3"
    audio.encode(samples, rate, "mp3", out)
    return out.read_bytes()


def test_a_reencoded_copy_loses_the_manifest_but_is_attributed_by_the_watermark(
    api_client, run_worker, dev_signing, tmp_path
):
    job, data = _embed(api_client, run_worker, "speech_16k_mono.wav", message="auto", label="Podcast ep. 7",
                       metadata='{"campaign": "spring"}')
    copy = _reencoded_mp3(data, tmp_path)
    with pytest.raises(c2pa.C2paError.ManifestNotFound):
        _reader(copy, "audio/mpeg", (dev_signing / "dev-ca.pem").read_text())

    answer = _verify_via_watermark(api_client, run_worker, copy, "reencoded.mp3")
    assert answer["manifest"]["present"] is False and answer["manifest"]["reason"]
    assert answer["path"] == "watermark"
    assert answer["watermark"]["detected"] is True
    assert answer["attribution"]["message"] == job["result"]["message"]
    assert answer["attribution"]["registry"]["label"] == "Podcast ep. 7"
    assert answer["attribution"]["registry"]["metadata"] == {"campaign": "spring"}
    assert answer["attribution"]["registry"]["job_id"] == job["id"]
    # Each region carries the entry too, and the detect job's own result says the same.
    assert all(s["registry"]["label"] == "Podcast ep. 7" for s in answer["watermark"]["segments"])
    detect_job = api_client.get(answer["watermark"]["job_url"]).json()
    assert detect_job["result"]["registry"]["label"] == "Podcast ep. 7"


def test_another_tenants_message_is_not_revealed(api_client, other_client, run_worker, dev_signing, tmp_path):
    job, data = _embed(api_client, run_worker, "speech_16k_mono.wav", message="auto", label="Acme secret")
    message = job["result"]["message"]
    copy = _reencoded_mp3(data, tmp_path)

    # Globex decodes the same 16 bits, but Acme's entry is not Globex's to see.
    answer = _verify_via_watermark(other_client, run_worker, copy, "found-online.mp3")
    assert answer["path"] == "watermark" and answer["attribution"]["message"] == message
    assert answer["attribution"]["registry"] is None
    assert all(s["registry"] is None for s in answer["watermark"]["segments"])
    assert "Acme secret" not in str(answer)
    assert_error(other_client.get(f"{MESSAGES}/{message}"), 404, "NOT_FOUND")
    assert other_client.get(MESSAGES).json()["results"] == []

    # The same message registered by Globex too: each tenant sees only its own entry.
    created = other_client.post(MESSAGES, {"message": message, "label": "Globex jingle"}, format="json")
    assert created.status_code == 201, created.json()
    mine = _verify_via_watermark(other_client, run_worker, copy, "found-online-again.mp3")
    assert mine["attribution"]["registry"]["label"] == "Globex jingle"
    theirs = _verify(api_client, data, "signed.wav")  # Acme's signed original: the manifest path
    assert theirs["attribution"]["registry"]["label"] == "Acme secret"
    # Globex reading Acme's signed original: the manifest says it was signed for Acme, so Globex's entry
    # for the same bits is not offered as its meaning, and Acme's is never shown.
    foreign = _verify(other_client, data, "signed.wav")
    assert foreign["path"] == "manifest" and foreign["attribution"]["message"] == message
    assert foreign["attribution"]["registry"] is None and foreign["attribution"]["signed_for_you"] is False
    assert "Acme secret" not in str(foreign)
    # Nor does another tenant's verification job exist for Acme.
    assert api_client.get(mine["watermark"]["verification_url"]).status_code == 404


def test_unsigned_outputs_say_why(api_client, run_worker, dev_signing, tenant):
    job, _ = _embed(api_client, run_worker, "speech.ogg", message="1A2B")
    assert job["result"]["provenance"] == {"signed": False, "reason": unsignable_reason("ogg")}
    assert "Ogg" in unsignable_reason("ogg")
    job, data = _embed(api_client, run_worker, "speech_44k_stereo.flac", message="1A2B")
    assert job["result"]["provenance"]["signed"] is False and "FLAC" in job["result"]["provenance"]["reason"]
    assert data[:4] == b"fLaC"  # left a plain FLAC file
    from provenance import services

    services.update_profile(tenant, manifests_enabled=False)
    job, data = _embed(api_client, run_worker, "speech_16k_mono.wav", message="1A2B")
    assert job["result"]["provenance"]["signed"] is False
    assert "switched off for this organisation" in job["result"]["provenance"]["reason"]
    with pytest.raises(c2pa.C2paError.ManifestNotFound):
        _reader(data, "audio/wav", (dev_signing / "dev-ca.pem").read_text())


def test_declaration_of_the_tenant_is_signed_into_the_manifest(api_client, run_worker, dev_signing, tenant):
    from provenance import services

    services.update_profile(
        tenant, generator_name="Acme Voice", generator_version="3.1",
        digital_source_type="http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia",
        statement="AI-generated speech.",
    )
    _, data = _embed(api_client, run_worker, "speech_16k_mono.wav", message="1A2B")
    answer = _verify(api_client, data, "signed.wav")
    assert answer["manifest"]["declaration"] == {
        "organisation": tenant.name, "organisation_id": str(tenant.pk),
        "generator": {"name": "Acme Voice", "version": "3.1"},
        "digital_source_type": "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia",
        "statement": "AI-generated speech.",
    }
    opened = answer["manifest"]["actions"][0]
    assert opened["digitalSourceType"].endswith("trainedAlgorithmicMedia")
    assert answer["attribution"]["registry"] is None  # 1A2B was given, not registered
    assert answer["attribution"]["signed_for_you"] is True


def test_an_unwatermarked_file_without_manifest_answers_none(api_client, run_worker, dev_signing):
    answer = _verify_via_watermark(api_client, run_worker, (FIXTURES / "speech2_16k_mono.wav").read_bytes(),
                                   "clean.wav")
    assert answer["path"] == "none" and answer["attribution"] is None
    assert answer["watermark"]["detected"] is False


def test_bad_verify_input_leaves_nothing_behind(api_client, _isolated_media):
    assert_error(api_client.post(VERIFY, {"file": upload("not_audio.wav")}, format="multipart"), 415,
                 "INVALID_FORMAT")
    assert_error(api_client.post(VERIFY, {}, format="multipart"), 400, "VALIDATION_ERROR")
    assert Job.objects.count() == 0 and stored_files(_isolated_media) == []


def test_embed_with_bad_registry_input_leaves_no_job_and_no_entry(api_client, _isolated_media):
    response = api_client.post(
        EMBED, {"file": upload("speech_16k_mono.wav"), "message": "auto", "label": "x", "metadata": "[1, 2]"},
        format="multipart",
    )
    assert_error(response, 400, "VALIDATION_ERROR")
    api_client.post(MESSAGES, {"message": "0001", "label": "taken"}, format="json")
    response = api_client.post(
        EMBED, {"file": upload("speech_16k_mono.wav"), "message": "0001", "label": "again"}, format="multipart"
    )
    assert_error(response, 409, "MESSAGE_TAKEN")
    assert Job.objects.count() == 0 and stored_files(_isolated_media) == []
    assert list(RegisteredMessage.objects.values_list("label", flat=True)) == ["taken"]


def test_reencode_helper_really_reencodes(tmp_path):
    """Guard for the tests above: the MP3 copy is a new encoding, not the signed bytes."""
    data = (FIXTURES / "speech_16k_mono.wav").read_bytes()
    copy = _reencoded_mp3(data, tmp_path)
    path = tmp_path / "c.mp3"
    path.write_bytes(copy)
    assert audio.sniff_format(path) == "mp3"
    assert np.isfinite(audio.decode(path)[0]).all()
