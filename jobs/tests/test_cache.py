"""The result cache end to end: real PostgreSQL and Redis, the real worker, the demo models.

A repeat of the same input by the same tenant with the same result-relevant params and model version is
answered from the cache (``cached: true``, no model call, billed 0 s by default); anything else runs.
"""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from django.utils import timezone

from billing.models import PeriodUsage, UsageEvent
from jobs.models import Job, ResultCache
from jobs.worker import cache
from testing.uploads import upload

pytestmark = pytest.mark.django_db(transaction=True)

DETECT = "/api/v1/watermark/detect"
EMBED = "/api/v1/watermark/embed"
EMOTION = "/api/v1/emotion/analyze"
SPEECH = "speech_16k_mono.wav"


@pytest.fixture
def model_calls(monkeypatch):
    """Counts calls of the detection and emotion handlers (the model work a cache hit must skip)."""
    from jobs.worker import handlers

    calls = {"watermark_detect": 0, "emotion_analyze": 0}
    for name in calls:
        original = getattr(handlers, name)

        def counted(ctx, _original=original, _name=name):
            calls[_name] += 1
            return _original(ctx)

        monkeypatch.setattr(handlers, name, counted)
    return calls


def _submit_and_run(client, run_worker, url, name=SPEECH, **data) -> dict:
    response = client.post(url, {"file": upload(name), **data}, format="multipart")
    assert response.status_code == 202, response.json()
    run_worker()
    job = client.get(f"/api/v1/jobs/{response.json()['id']}").json()
    assert job["status"] == "succeeded", job
    return job


def _strip(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in ("cached", "cached_from_job")}


def test_repeat_detection_is_answered_from_the_cache_and_is_free(api_client, run_worker, model_calls):
    first = _submit_and_run(api_client, run_worker, DETECT)
    assert first["result"]["cached"] is False
    assert model_calls["watermark_detect"] == 1

    second = _submit_and_run(api_client, run_worker, DETECT)
    assert model_calls["watermark_detect"] == 1  # the model was not called again
    assert second["result"]["cached"] is True
    assert second["result"]["cached_from_job"] == first["id"]
    assert _strip(second["result"]) == _strip(first["result"])
    assert second["model"] == first["model"]  # the job still says which model produced its result

    # The ledger says what each job was billed: the first its duration, the cached one nothing.
    jobs = {str(j.pk): j for j in Job.objects.all()}
    seconds = math.ceil(jobs[first["id"]].input["duration_seconds"])
    events = {str(e.job_id): e for e in UsageEvent.objects.all()}
    assert events[first["id"]].quantity == seconds
    assert events[second["id"]].quantity == 0
    usage = PeriodUsage.objects.get()
    assert usage.used_seconds == seconds and usage.reserved_seconds == 0  # the cached job's hold released
    entry = ResultCache.objects.get()
    assert entry.hits == 1 and entry.source_job_id == jobs[first["id"]].pk


def test_cached_jobs_are_billed_when_configured(api_client, run_worker, settings):
    settings.RESULT_CACHE_CHARGE = True
    _submit_and_run(api_client, run_worker, DETECT)
    second = _submit_and_run(api_client, run_worker, DETECT)
    assert second["result"]["cached"] is True
    job = Job.objects.get(pk=second["id"])
    assert UsageEvent.objects.get(job_id=job.pk).quantity == math.ceil(job.input["duration_seconds"])


def test_the_cache_is_per_tenant(api_client, other_client, run_worker, model_calls):
    _submit_and_run(api_client, run_worker, DETECT)
    other = _submit_and_run(other_client, run_worker, DETECT)
    assert other["result"]["cached"] is False
    assert model_calls["watermark_detect"] == 2


def test_a_different_input_or_model_version_misses(api_client, run_worker, model_calls, monkeypatch):
    from jobs.worker.pool import get_pool

    _submit_and_run(api_client, run_worker, DETECT)
    assert _submit_and_run(api_client, run_worker, DETECT, name="speech2_16k_mono.wav")["result"]["cached"] is False

    models = get_pool().get("watermark")
    monkeypatch.setattr(models, "detector_version", "new-checkpoint")  # as if a new detector were deployed
    again = _submit_and_run(api_client, run_worker, DETECT)
    assert again["result"]["cached"] is False
    assert again["model"]["version"] == "new-checkpoint"
    assert model_calls["watermark_detect"] == 3


def test_expired_entries_are_ignored_then_replaced(api_client, run_worker, settings, model_calls):
    settings.RESULT_CACHE_MAX_AGE_DAYS = 7
    first = _submit_and_run(api_client, run_worker, DETECT)
    ResultCache.objects.update(created_at=timezone.now() - timedelta(days=8))
    second = _submit_and_run(api_client, run_worker, DETECT)
    assert second["result"]["cached"] is False and model_calls["watermark_detect"] == 2
    entry = ResultCache.objects.get()  # overwritten in place, not duplicated
    assert str(entry.source_job_id) == second["id"] != first["id"]
    assert cache.prune() == 0  # fresh again
    ResultCache.objects.update(created_at=timezone.now() - timedelta(days=8))
    assert cache.prune() == 1 and not ResultCache.objects.exists()


def test_embedding_is_never_cached_and_the_cache_can_be_off(api_client, run_worker, settings):
    embed = _submit_and_run(api_client, run_worker, EMBED, message="1A2B")
    assert "cached" not in embed["result"]
    settings.RESULT_CACHE_ENABLED = False
    _submit_and_run(api_client, run_worker, DETECT)
    off = _submit_and_run(api_client, run_worker, DETECT)
    assert "cached" not in off["result"]
    assert not ResultCache.objects.exists()


def test_emotion_is_cached_per_params(api_client, run_worker, model_calls):
    first = _submit_and_run(api_client, run_worker, EMOTION)
    assert first["result"]["cached"] is False
    frame = _submit_and_run(api_client, run_worker, EMOTION, granularity="frame")
    assert frame["result"]["cached"] is False  # other params: another result
    again = _submit_and_run(api_client, run_worker, EMOTION, granularity="utterance")
    assert again["result"]["cached"] is True
    assert _strip(again["result"]) == _strip(first["result"])
    assert model_calls["emotion_analyze"] == 2

    # With an embedding the job has an output file, which the cache does not keep: always computed.
    embedded = _submit_and_run(api_client, run_worker, EMOTION, extract_embedding="true")
    assert "cached" not in embedded["result"] and model_calls["emotion_analyze"] == 3


def test_params_hash_ignores_irrelevant_params_and_fills_defaults():
    base = cache.params_hash("emotion", {"granularity": "utterance", "extract_embedding": False})
    assert cache.params_hash("emotion", {}) == base
    assert cache.params_hash("emotion", {"granularity": "utterance", "callback": "x"}) == base
    assert cache.params_hash("emotion", {"granularity": "frame"}) != base
    assert cache.params_hash("watermark_detect", {"anything": 1}) == cache.params_hash("watermark_detect", {})
