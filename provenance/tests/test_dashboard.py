"""The dashboard's Provenance and Verify pages: members register messages, only owners and admins change
the Content Credentials settings, a verification shows the manifest's checks or the watermark's answer, and
nobody sees another organisation's registry or verifications."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from jobs.models import Job
from provenance import selectors, services
from provenance.models import RegisteredMessage
from testing.uploads import FIXTURES

pytestmark = pytest.mark.django_db


def test_a_member_registers_a_message_and_sees_only_their_tenants(people):
    services.register_message(people.other_tenant, message="1A2B", label="Globex private")
    member = people.client("member")
    response = member.post(reverse("dashboard:provenance"),
                           {"message": "", "label": "Spring", "metadata": '{"voice": "nova"}'})
    assert response.status_code == 302
    page = member.get(reverse("dashboard:provenance")).content.decode()
    assert "Spring" in page and "0001" in page and "Globex private" not in page
    assert "{&quot;voice&quot;: &quot;nova&quot;}" in page  # shown as JSON
    assert RegisteredMessage.objects.get(tenant=people.tenant).metadata == {"voice": "nova"}


def test_bad_registrations_show_errors_and_save_nothing(people):
    owner = people.client("owner")
    url = reverse("dashboard:provenance")
    assert owner.post(url, {"message": "", "label": "x", "metadata": "[1]"}).status_code == 400
    owner.post(url, {"message": "00AA", "label": "first"})
    response = owner.post(url, {"message": "00aa", "label": "second"})
    assert response.status_code == 400 and "already registered" in response.content.decode()
    assert list(RegisteredMessage.objects.values_list("label", flat=True)) == ["first"]


def test_only_owners_and_admins_change_the_settings(people):
    url = reverse("dashboard:provenance-settings")
    form = {"generator_name": "Acme Voice", "digital_source_type": "", "statement": ""}  # manifests unticked
    assert people.client("member").post(url, form).status_code == 403
    assert selectors.profile_for(people.tenant.pk).manifests_enabled is True
    assert people.client("admin").post(url, form).status_code == 302
    profile = selectors.profile_for(people.tenant.pk)
    assert profile.manifests_enabled is False and profile.generator_name == "Acme Voice"
    assert selectors.profile_for(people.other_tenant.pk).manifests_enabled is True


def test_verify_page_shows_why_an_unsigned_file_goes_to_the_watermark(people, redis_clean):
    owner = people.client("owner")
    wav = SimpleUploadedFile("clean.wav", (FIXTURES / "speech_16k_mono.wav").read_bytes())
    response = owner.post(reverse("dashboard:provenance-verify"), {"file": wav})
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse(
        "dashboard:provenance-verification", kwargs={"pk": job.pk}
    )
    page = owner.get(response["Location"]).content.decode()
    assert "The file carries no C2PA manifest." in page and "Detecting the watermark" in page
    assert 'hx-trigger="every 2s"' in page  # polls until the detection is final
    fragment = owner.get(response["Location"] + "?fragment=1").content.decode()
    assert fragment.lstrip().startswith("<section") and "<html" not in fragment
    # Another organisation cannot open it.
    assert people.client("outsider").get(response["Location"]).status_code == 404


def test_verify_page_refuses_a_file_that_is_not_audio(people):
    bad = SimpleUploadedFile("x.wav", (FIXTURES / "not_audio.wav").read_bytes())
    response = people.client("owner").post(reverse("dashboard:provenance-verify"), {"file": bad})
    assert response.status_code == 400 and Job.objects.count() == 0


def test_verify_page_shows_a_valid_manifest(people, dev_signing, tmp_path, settings):
    """A file signed by media_ops.provenance with the trusted dev chain answers at once, from its manifest."""
    import shutil

    from media_ops import provenance
    from media_ops.provenance import devchain

    signed = tmp_path / "signed.wav"
    shutil.copy(FIXTURES / "speech_16k_mono.wav", signed)
    provenance.sign_output(
        provenance.SignRequest(
            output_path=signed, output_format="wav", input_path=FIXTURES / "speech_16k_mono.wav",
            input_format="wav", title="signed.wav",
            binding=provenance.WatermarkBinding(
                "AudioSeal", "demo", "v1", "0001", settings.PROVENANCE_SOFT_BINDING_ALG
            ),
            declaration=provenance.Declaration("Acme", organisation_id=str(people.tenant.pk)),
        ),
        provenance.SigningConfig(str(dev_signing / devchain.CHAIN_FILE), str(dev_signing / devchain.KEY_FILE)),
    )
    services.register_message(people.tenant, message="0001", label="Launch trailer")
    response = people.client("member").post(
        reverse("dashboard:provenance-verify"), {"file": SimpleUploadedFile("signed.wav", signed.read_bytes())}
    )
    page = response.content.decode()
    assert response.status_code == 200 and "Valid and signed by a trusted certificate." in page
    assert "Launch trailer" in page and Job.objects.count() == 0


def test_a_detection_page_shows_the_registry_label_of_your_message_only(people):
    from jobs.models import JobKind, JobStatus

    services.register_message(people.tenant, message="1A2B", label="Acme campaign")
    services.register_message(people.other_tenant, message="1A2B", label="Globex campaign")
    segment = {"start_seconds": 0.0, "end_seconds": 2.0, "message": "1A2B", "confidence": "high", "probability": 0.99}
    result = {"detected": True, "message": "1A2B", "bits": [0] * 16, "probability": 0.99, "confidence": "high",
              "segments": [segment], "localization": {"hop_seconds": 0.01, "values": []}}
    job = Job.objects.create(tenant=people.tenant, kind=JobKind.WATERMARK_DETECT, status=JobStatus.SUCCEEDED,
                             result=result, input={"filename": "x.wav", "format": "wav", "size_bytes": 64044,
                                                   "duration_seconds": 2.0, "sample_rate": 16000, "channels": 1})
    page = people.client("member").get(reverse("dashboard:job-detail", kwargs={"pk": job.pk})).content.decode()
    assert "Acme campaign" in page and "Globex campaign" not in page
    assert Job.objects.get(pk=job.pk).result == result  # annotated when shown, never stored
