"""Staff admin for jobs: filters and search, links to the stored files, and the retry / cancel actions,
which go through ``jobs.services`` (a retry is a fresh submission with its own reservation)."""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse

from billing.models import Reservation
from jobs.models import Job, JobKind, JobStatus
from jobs.tests.test_dashboard import make_job
from testing.uploads import FIXTURES

pytestmark = pytest.mark.django_db


def test_filters_and_search(people):
    failed = make_job(people.tenant, status=JobStatus.FAILED, filename="broken-take.wav")
    make_job(people.other_tenant, kind=JobKind.EMOTION, filename="call.wav")
    staff = people.client("staff")
    url = reverse("admin:jobs_job_changelist")
    for query, expected in (
        ("?status__exact=failed", [failed.pk]),
        ("?kind__exact=emotion", None),
        (f"?tenant__id__exact={people.tenant.pk}", [failed.pk]),
        ("?created_within=24h", None),
        ("?q=broken-take", [failed.pk]),
        (f"?q={failed.pk}", [failed.pk]),
    ):
        response = staff.get(url + query)
        assert response.status_code == 200, query
        rows = [job.pk for job in response.context["cl"].result_list]
        if expected is not None:
            assert rows == expected, query
    assert people.client("owner").get(url).status_code == 302  # customers never see it


def test_job_page_links_files_and_is_read_only(people):
    job = make_job(people.tenant, kind=JobKind.WATERMARK_EMBED, output=b"RIFFout", result={"message": "1A2B"})
    staff = people.client("staff")
    page = staff.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    input_url = reverse("admin:jobs_job_file", args=[job.pk, "input"])
    output_url = reverse("admin:jobs_job_file", args=[job.pk, "output"])
    assert input_url in page and output_url in page and "1A2B" in page
    assert 'name="status"' not in page  # read-only: no editable status field
    assert b"".join(staff.get(output_url).streaming_content) == b"RIFFout"
    assert b"".join(staff.get(input_url).streaming_content) == b"RIFF"
    assert staff.get(reverse("admin:jobs_job_file", args=[job.pk, "nope"])).status_code == 404
    assert people.client("owner").get(output_url).status_code == 302


def test_cancel_action_uses_the_state_machine(people):
    queued = make_job(people.tenant, status=JobStatus.QUEUED)
    done = make_job(people.tenant, status=JobStatus.SUCCEEDED)
    people.client("staff").post(
        reverse("admin:jobs_job_changelist"),
        {"action": "cancel_active", ACTION_CHECKBOX_NAME: [str(queued.pk), str(done.pk)]},
    )
    queued.refresh_from_db()
    done.refresh_from_db()
    assert queued.status == JobStatus.CANCELED and queued.finished_at is not None
    assert done.status == JobStatus.SUCCEEDED


def test_retry_failed_resubmits_the_stored_input(people):
    failed = make_job(people.tenant, status=JobStatus.FAILED, kind=JobKind.WATERMARK_DETECT,
                      error_code="WORKER_LOST")
    default_storage.delete(failed.input_file)
    default_storage.save(failed.input_file, ContentFile((FIXTURES / "speech_16k_mono.wav").read_bytes()))
    succeeded = make_job(people.tenant)
    people.client("staff").post(
        reverse("admin:jobs_job_changelist"),
        {"action": "retry_failed", ACTION_CHECKBOX_NAME: [str(failed.pk), str(succeeded.pk)]},
    )
    new = Job.objects.exclude(pk__in=[failed.pk, succeeded.pk]).get()
    assert new.status == JobStatus.QUEUED and new.kind == failed.kind and new.tenant == people.tenant
    assert new.input["filename"] == "speech.wav" and new.input["duration_seconds"] > 1
    assert default_storage.exists(new.input_file) and new.input_file != failed.input_file
    assert Reservation.objects.filter(job_id=new.pk).exists()  # the retry holds its own quota reservation
    failed.refresh_from_db()
    assert failed.status == JobStatus.FAILED  # the original stays as it was


def test_retry_of_a_report_without_its_optional_original(people):
    """A report submitted without ``original`` is resubmitted without one (not refused as a missing file)."""
    failed = make_job(people.tenant, status=JobStatus.FAILED, kind=JobKind.WATERMARK_REPORT, error_code="WORKER_LOST")
    default_storage.delete(failed.input_file)
    default_storage.save(failed.input_file, ContentFile((FIXTURES / "speech_16k_mono.wav").read_bytes()))
    people.client("staff").post(
        reverse("admin:jobs_job_changelist"), {"action": "retry_failed", ACTION_CHECKBOX_NAME: [str(failed.pk)]}
    )
    new = Job.objects.exclude(pk=failed.pk).get()
    assert new.kind == JobKind.WATERMARK_REPORT and new.status == JobStatus.QUEUED and new.extra_inputs == {}
    # Reserved as a report: the file's duration times the battery's attacks times the per-attack rate.
    assert Reservation.objects.get(job_id=new.pk).seconds > new.input["duration_seconds"] * 5
