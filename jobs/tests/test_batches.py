"""Batches: many inputs in one request, per-item jobs and per-item refusals, quota per item, counts, tenant
scoping, idempotency, and exactly one ``batch.completed`` webhook however the items finish."""

from __future__ import annotations

import json
import threading

import pytest
from django.db import connections

from billing import services as billing_services
from billing.models import PeriodUsage, Reservation, ReservationState
from jobs import services
from jobs.models import Batch, Job, JobStatus, WebhookDelivery
from testing.assertions import assert_error
from testing.https_files import Route
from testing.uploads import FIXTURES, stored_files, tone_wav_bytes, upload

pytestmark = pytest.mark.django_db(transaction=True)

BATCHES = "/api/v1/batches"
SPEECH = (FIXTURES / "speech_16k_mono.wav").read_bytes()
NOT_AUDIO = b"this is not audio at all\n" * 40


def wav(name: str, seconds: float = 0.5):
    return upload(name, content=tone_wav_bytes(seconds))


def post_batch(client, files=(), **fields):
    headers = {name: fields.pop(name) for name in list(fields) if name.startswith("HTTP_")}
    return client.post(BATCHES, {"file": list(files), **fields}, format="multipart", **headers)


def test_a_batch_with_a_bad_item_creates_jobs_for_the_good_ones(api_client, tenant, https_files, run_worker,
                                                                 _isolated_media):
    tenant.webhook_url = "https://hooks.example.com/batches"
    tenant.save()
    https_files.routes["/remote.wav"] = Route(body=SPEECH)
    response = post_batch(
        api_client, [wav("a.wav"), upload("notes.wav", content=NOT_AUDIO), wav("b.wav")],
        kind="watermark_embed", message="1A2B",
        file_url=[https_files.url("/remote.wav"), https_files.url("/missing.wav")],
    )
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "processing" and body["kind"] == "watermark_embed"
    counts = body["counts"]
    assert (counts["items"], counts["accepted"], counts["refused"], counts["queued"]) == (5, 3, 2, 3)
    items = body["items"]
    assert [item["index"] for item in items] == [0, 1, 2, 3, 4]
    assert [item["input"] for item in items] == ["a.wav", "notes.wav", "b.wav", "remote.wav",
                                                 https_files.url("/missing.wav")]
    assert items[1]["job"] is None and items[1]["error"]["code"] == "INVALID_FORMAT"
    assert items[4]["job"] is None and items[4]["error"]["code"] == "URL_FETCH_FAILED"
    assert items[4]["error"]["details"]["upstream_status"] == 404
    assert all(items[i]["job"]["params"]["message"] == "1A2B" for i in (0, 2, 3))
    # Only the accepted items are stored and reserved: one reservation per item job.
    assert len(stored_files(_isolated_media)) == 3
    assert Reservation.objects.filter(state=ReservationState.RESERVED).count() == 3

    run_worker(["watermark"])
    done = api_client.get(f"{BATCHES}/{body['id']}").json()
    assert done["status"] == "completed" and done["completed_at"]
    assert (done["counts"]["succeeded"], done["counts"]["queued"], done["counts"]["running"]) == (3, 0, 0)
    # ONE webhook for the batch, none per item.
    deliveries = list(WebhookDelivery.objects.all())
    assert [d.event for d in deliveries] == ["batch.completed"]
    payload = json.loads(deliveries[0].body)
    assert payload["type"] == "batch.completed" and payload["id"] == body["id"]
    assert payload["counts"]["succeeded"] == 3 and payload["counts"]["refused"] == 2
    assert deliveries[0].batch_id is not None and deliveries[0].job_id is None


def test_per_item_params_override_the_shared_ones(api_client):
    response = post_batch(
        api_client, [wav("a.wav"), wav("b.wav")], kind="watermark_embed", message="1A2B",
        item_params=json.dumps([{}, {"message": "BEEF", "output_format": "flac"}]),
    )
    assert response.status_code == 202, response.json()
    params = [item["job"]["params"] for item in response.json()["items"]]
    assert params == [{"message": "1A2B"}, {"message": "BEEF", "output_format": "flac"}]
    assert_error(post_batch(api_client, [wav("c.wav")], kind="watermark_embed",
                            item_params=json.dumps([{}, {}])), 400, "VALIDATION_ERROR")
    assert_error(post_batch(api_client, [wav("d.wav")], kind="watermark_embed",
                            item_params=json.dumps([{"message": "XYZ"}])), 400, "INVALID_MESSAGE")


def test_message_auto_takes_a_free_registry_message_per_item(api_client, tenant):
    """``message=auto`` in a batch runs the registry step per item, as a single embed does: each item gets its
    own registered message (never the literal "auto")."""
    from provenance.models import RegisteredMessage

    response = post_batch(api_client, [wav("a.wav"), wav("b.wav")], kind="watermark_embed", message="auto")
    assert response.status_code == 202, response.json()
    messages = [item["job"]["params"]["message"] for item in response.json()["items"]]
    assert len(set(messages)) == 2 and all(len(m) == 4 and m.upper() != "AUTO" for m in messages), messages
    registered = RegisteredMessage.objects.filter(tenant=tenant)
    assert sorted(registered.values_list("message", flat=True)) == sorted(messages)
    assert set(registered.values_list("job_id", flat=True)) == set(Job.objects.values_list("id", flat=True))


def test_quota_refuses_items_not_the_batch_and_leaks_nothing(api_client, tenant, _isolated_media):
    billing_services.change_subscription(tenant, overrides={"max_concurrent_jobs": 2})
    response = post_batch(api_client, [wav("a.wav"), wav("b.wav"), wav("c.wav")], kind="watermark_detect")
    assert response.status_code == 202, response.json()
    items = response.json()["items"]
    assert [bool(item["job"]) for item in items] == [True, True, False]
    assert items[2]["error"]["code"] == "CONCURRENCY_LIMIT"
    assert Job.objects.count() == 2 and len(stored_files(_isolated_media)) == 2
    assert Reservation.objects.filter(state=ReservationState.RESERVED).count() == 2
    reserved = sum(usage.reserved_seconds for usage in PeriodUsage.objects.all())
    assert reserved == sum(r.seconds for r in Reservation.objects.all())


def test_a_batch_whose_every_item_is_refused_leaves_nothing(api_client, tenant, https_files, _isolated_media):
    billing_services.change_subscription(tenant, overrides={"max_file_bytes": 100_000})
    https_files.routes["/big.wav"] = Route(body=tone_wav_bytes(4.0), chunked=True)
    body = assert_error(
        post_batch(api_client, [upload("notes.wav", content=NOT_AUDIO)], kind="emotion",
                   file_url=[f"https://127.0.0.1:{https_files.port}/x.wav", "https://10.0.0.7/x.wav",
                             "https://[::1]/x.wav", https_files.url("/big.wav"), https_files.url("/nope.wav")]),
        422, "BATCH_REJECTED",
    )
    codes = [item["code"] for item in body["error"]["details"]["items"]]
    assert codes == ["INVALID_FORMAT", "URL_NOT_ALLOWED", "URL_NOT_ALLOWED", "URL_NOT_ALLOWED", "FILE_TOO_LARGE",
                     "URL_FETCH_FAILED"]
    assert Batch.objects.count() == 0 and Job.objects.count() == 0
    assert stored_files(_isolated_media) == [] and Reservation.objects.count() == 0
    assert all(usage.reserved_seconds == 0 for usage in PeriodUsage.objects.all())


def test_request_shape_is_checked(api_client, settings, _isolated_media):
    settings.BATCH_MAX_ITEMS = 2
    assert_error(post_batch(api_client, [wav("a.wav"), wav("b.wav"), wav("c.wav")], kind="watermark_detect"),
                 400, "BATCH_TOO_LARGE")
    assert_error(post_batch(api_client, [], kind="watermark_detect"), 400, "VALIDATION_ERROR")
    assert_error(post_batch(api_client, [wav("a.wav")], kind="beatsync"), 400, "VALIDATION_ERROR")
    assert_error(post_batch(api_client, [wav("a.wav")], kind="watermark_detect", model_version="nope"),
                 422, "UNKNOWN_MODEL_VERSION")
    assert Batch.objects.count() == 0 and Job.objects.count() == 0 and stored_files(_isolated_media) == []


def test_idempotency_key_returns_the_same_batch(api_client):
    first = post_batch(api_client, [wav("a.wav"), wav("b.wav")], kind="watermark_detect",
                       HTTP_IDEMPOTENCY_KEY="batch-1")
    again = post_batch(api_client, [wav("a.wav"), wav("b.wav")], kind="watermark_detect",
                       HTTP_IDEMPOTENCY_KEY="batch-1")
    assert first.status_code == again.status_code == 202
    assert again["Idempotent-Replayed"] == "true" and again.json()["id"] == first.json()["id"]
    assert Batch.objects.count() == 1 and Job.objects.count() == 2
    other = post_batch(api_client, [wav("a.wav"), wav("c.wav", 0.7)], kind="watermark_detect",
                       HTTP_IDEMPOTENCY_KEY="batch-1")
    assert_error(other, 409, "IDEMPOTENCY_CONFLICT")
    assert Batch.objects.count() == 1 and Job.objects.count() == 2


def test_batches_are_tenant_scoped_and_listed(api_client, other_client):
    mine = post_batch(api_client, [wav("a.wav")], kind="watermark_detect").json()
    assert_error(other_client.get(f"{BATCHES}/{mine['id']}"), 404, "NOT_FOUND")
    assert_error(other_client.post(f"{BATCHES}/{mine['id']}/cancel"), 404, "NOT_FOUND")
    assert other_client.get(BATCHES).json()["results"] == []
    listed = api_client.get(BATCHES).json()["results"]
    assert [b["id"] for b in listed] == [mine["id"]] and listed[0]["counts"]["accepted"] == 1


def test_cancel_ends_the_batch_with_one_event(api_client, tenant):
    tenant.webhook_url = "https://hooks.example.com/batches"
    tenant.save()
    batch = post_batch(api_client, [wav("a.wav"), wav("b.wav")], kind="watermark_detect").json()
    response = api_client.post(f"{BATCHES}/{batch['id']}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "completed" and response.json()["counts"]["canceled"] == 2
    assert list(WebhookDelivery.objects.values_list("event", flat=True)) == ["batch.completed"]
    assert Reservation.objects.filter(state=ReservationState.RESERVED).count() == 0


@pytest.mark.parametrize("round_", range(4))
def test_batch_completed_is_written_exactly_once_when_items_finish_at_once(api_client, tenant, round_):
    """Items finished by concurrent workers through the real state machine (threads with their own
    connections, released together): exactly one completes the batch and writes its event. (Here billing's
    period lock also orders the final transitions; the next test takes it away.)"""
    tenant.webhook_url = "https://hooks.example.com/batches"
    tenant.save()
    billing_services.change_subscription(tenant, overrides={"max_concurrent_jobs": 20})
    batch_id = post_batch(api_client, [wav(f"{i}.wav") for i in range(6)], kind="watermark_detect").json()["id"]
    jobs = list(Job.objects.filter(batch_id=batch_id))
    assert len(jobs) == 6  # one connection each, plus the test's: within the pool's 8
    for job in jobs:
        assert services.start(job.pk, "w") is not None
    barrier = threading.Barrier(len(jobs))
    errors: list[BaseException] = []

    def finish(job_id, index: int) -> None:
        try:
            job = Job.objects.get(pk=job_id)
            barrier.wait(10)
            if index % 2:
                services.fail(job, "PROCESSING_FAILED", "boom")
            else:
                services.succeed(job, result={"detected": False})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=finish, args=(job.pk, i)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    batch = Batch.objects.get(pk=batch_id)
    assert batch.open_items == 0 and batch.completed_at is not None
    assert WebhookDelivery.objects.filter(batch=batch, event="batch.completed").count() == 1
    assert WebhookDelivery.objects.filter(job__batch=batch).count() == 0
    assert Job.objects.filter(batch=batch, status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED]).count() == 6


def test_the_count_down_alone_completes_once_under_overlapping_transactions(api_client, tenant):
    """The batch's own condition, without billing's period lock (which already serializes one tenant's final
    transitions): six transactions each end an item, all still open when they count it down, then commit. A
    check that read "no item active" would see the others' uncommitted items as active and never complete
    the batch; the conditional count-down completes it exactly once."""
    tenant.webhook_url = "https://hooks.example.com/batches"
    tenant.save()
    billing_services.change_subscription(tenant, overrides={"max_concurrent_jobs": 20})
    batch_id = post_batch(api_client, [wav(f"{i}.wav") for i in range(6)], kind="watermark_detect").json()["id"]
    job_ids = list(Job.objects.filter(batch_id=batch_id).values_list("pk", flat=True))
    barrier = threading.Barrier(len(job_ids))
    errors: list[BaseException] = []

    def end_item(job_id) -> None:
        from django.db import transaction

        try:
            with transaction.atomic():
                Job.objects.filter(pk=job_id).update(status=JobStatus.SUCCEEDED)
                barrier.wait(10)  # every item's status is written, none committed
                services._close_batch_item(Job.objects.get(pk=job_id))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=end_item, args=(pk,)) for pk in job_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    batch = Batch.objects.get(pk=batch_id)
    assert batch.open_items == 0 and batch.completed_at is not None
    assert WebhookDelivery.objects.filter(batch=batch, event="batch.completed").count() == 1


@pytest.mark.parametrize(("event_types", "sent"), [
    ([], True), (["batch.completed"], True), (["job.succeeded", "job.failed"], False),
])
def test_batch_completed_respects_the_tenant_event_filter(api_client, tenant, event_types, sent):
    """``batch.completed`` is an event type like the job ones: the tenant's default URL gets it only when its
    filter is empty or names it (and the item jobs still send none)."""
    from jobs.webhooks.events import EVENT_TYPES

    assert "batch.completed" in EVENT_TYPES
    tenant.webhook_url = "https://hooks.example.com/batches"
    tenant.webhook_event_types = event_types
    tenant.save()
    batch = post_batch(api_client, [wav("a.wav")], kind="watermark_detect").json()
    assert api_client.post(f"{BATCHES}/{batch['id']}/cancel").json()["status"] == "completed"
    events = list(WebhookDelivery.objects.values_list("event", flat=True))
    assert events == (["batch.completed"] if sent else [])


def test_a_resent_batch_event_keeps_its_batch(api_client, tenant, monkeypatch):
    """Resending a ``batch.completed`` delivery (same ``webhook-id``) stays linked to its batch."""
    from jobs.webhooks import outbox
    from testing.dns import fake_dns

    fake_dns(monkeypatch, {"hooks.example.com": "93.184.215.14"})  # the resend checks the URL again

    tenant.webhook_url = "https://hooks.example.com/batches"
    tenant.save()
    batch = post_batch(api_client, [wav("a.wav")], kind="watermark_detect").json()
    api_client.post(f"{BATCHES}/{batch['id']}/cancel")
    original = WebhookDelivery.objects.get()
    copy = outbox.resend(original)
    assert str(copy.batch_id) == batch["id"] and copy.event_id == original.event_id and copy.job_id is None


def test_a_key_limited_to_some_kinds_cannot_batch_others(tenant, redis_clean, _isolated_media):
    """A batch's kind is in its body, not its URL: a key limited to detection is refused a batch of embeds
    (403 KEY_SCOPE, nothing created) and may still batch detections."""
    from accounts import services as accounts_services
    from testing.factories import client_for

    client = client_for(accounts_services.issue_api_key(tenant, "scoped", job_kinds=["watermark_detect"]).secret)
    body = assert_error(post_batch(client, [wav("a.wav")], kind="watermark_embed"), 403, "KEY_SCOPE")
    assert body["error"]["details"]["kind"] == "watermark_embed"
    assert Batch.objects.count() == 0 and Job.objects.count() == 0 and stored_files(_isolated_media) == []
    assert post_batch(client, [wav("a.wav")], kind="watermark_detect").status_code == 202
