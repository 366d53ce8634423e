"""The robustness report end to end: real PostgreSQL, Redis and worker code, the demo AudioSeal checkpoints, the
real attack battery (``media_ops.watermark.attacks``) and billing's reserve/settle/release."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.signal import butter, sosfiltfilt

from billing.models import PeriodUsage, Reservation, ReservationState, UsageEvent
from jobs.models import Job
from media_ops.watermark import attacks
from testing.assertions import assert_error
from testing.uploads import stored_files, upload

pytestmark = pytest.mark.django_db(transaction=True)

EMBED = "/api/v1/watermark/embed"
REPORT = "/api/v1/watermark/report"
ATTACKS = "/api/v1/watermark/report/attacks"
SPEECH = "speech_16k_mono.wav"


def _finished(client, run_worker, response) -> dict:
    assert response.status_code == 202, response.json()
    run_worker()
    return client.get(f"/api/v1/jobs/{response.json()['id']}").json()


def _watermarked(client, run_worker, fixture: str = SPEECH, message: str = "1A2B") -> tuple[bytes, dict]:
    """An embed job's output bytes (what a customer would test) and the embed job."""
    job = _finished(client, run_worker, client.post(EMBED, {"file": upload(fixture), "message": message},
                                                     format="multipart"))
    assert job["status"] == "succeeded", job
    body = b"".join(client.get(f"/api/v1/jobs/{job['id']}/output").streaming_content)
    return body, job


def _lowpass(cutoff: float):
    def attack(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        return sosfiltfilt(butter(4, cutoff, fs=sr, output="sos"), x).astype(np.float32)

    return attack


# Attacks that must break any watermark (nothing of the signal left; everything above 1 kHz removed, measured
# to break the demo model on all three fixture voices), beside a benign one of the real battery.
MUST_BREAK = (
    attacks.Attack("silence", "test", "every sample set to zero", lambda x, sr, rng: np.zeros_like(x)),
    attacks.Attack("lowpass_1k", "test", "low-pass 1 kHz (Butterworth, order 8, zero phase)", _lowpass(1000)),
)
BENIGN = attacks.get("gain_-10db")


def _row(result: dict, name: str) -> dict:
    return next(r for r in result["attacks"] if r["name"] == name)


def test_report_runs_the_whole_battery_and_is_billed_per_attack(api_client, run_worker, settings):
    marked, embed_job = _watermarked(api_client, run_worker)
    job = _finished(api_client, run_worker, api_client.post(
        REPORT, {"file": upload("marked.wav", content=marked), "original": upload(SPEECH)}, format="multipart"))
    assert job["status"] == "succeeded", job
    assert job["kind"] == "watermark_report" and job["model"]["name"]
    result = job["result"]

    assert result["battery"] == {"version": attacks.BATTERY_VERSION, "attacks": len(attacks.BATTERY)}
    assert [r["name"] for r in result["attacks"]] == [a.name for a in attacks.BATTERY]
    assert all(r["error"] is None for r in result["attacks"])
    assert result["expected_message"] == "1A2B" and result["message_source"] == "detected"
    assert result["reference"]["detected"] and result["reference"]["message_survived"]
    gain = _row(result, "gain_-10db")
    assert gain["detected"] and gain["message_survived"] and gain["bit_accuracy"] == 1.0 and gain["message"] == "1A2B"
    summary = result["summary"]
    assert summary["detected"] == sum(r["detected"] for r in result["attacks"])
    assert summary["message_survived"] == sum(r["message_survived"] for r in result["attacks"])
    # A surviving message implies detection, never the other way round.
    assert all(r["detected"] for r in result["attacks"] if r["message_survived"])
    # Quality against the original: the embed job's own SNR, measured again on the decoded files.
    assert result["quality"]["snr_db"] == pytest.approx(embed_job["result"]["snr_db"], abs=0.3)
    assert result["quality"]["offset_samples"] == 0
    assert result["quality"]["segmental_snr_db"] is not None
    assert job["input"]["original"]["filename"] == SPEECH

    # Billing: duration x attacks x rate, reserved at submission, settled as one ledger row of that kind.
    row = Job.objects.get(pk=job["id"])
    duration = row.input["duration_seconds"]
    billed = duration * len(attacks.BATTERY) * settings.WATERMARK_REPORT_ATTACK_RATE
    assert row.audio_seconds == pytest.approx(billed)
    event = UsageEvent.objects.get(job_id=row.pk)
    assert event.kind == "watermark_report" and event.quantity == math.ceil(billed)
    assert Reservation.objects.get(job_id=row.pk).state == ReservationState.SETTLED
    usage = PeriodUsage.objects.get(tenant=row.tenant)
    assert usage.reserved_seconds == 0
    assert usage.used_seconds == event.quantity + UsageEvent.objects.get(job_id=embed_job["id"]).quantity


def test_an_attack_that_destroys_the_mark_is_reported_broken(api_client, run_worker, monkeypatch):
    monkeypatch.setattr(attacks, "BATTERY", (*MUST_BREAK, BENIGN))
    marked, _ = _watermarked(api_client, run_worker)
    job = _finished(api_client, run_worker, api_client.post(
        REPORT, {"file": upload("marked.wav", content=marked), "message": "1a2b"}, format="multipart"))
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert result["message_source"] == "given" and result["expected_message"] == "1A2B"
    assert result["quality"] is None  # no original sent
    for attack in MUST_BREAK:
        row = _row(result, attack.name)
        assert not row["detected"] and not row["message_survived"] and row["message"] is None, row
        assert row["probability"] < 0.1 and row["bit_accuracy"] < 0.75, row
    benign = _row(result, BENIGN.name)
    assert benign["detected"] and benign["message_survived"] and benign["probability"] > 0.9
    assert result["summary"] | {"text": ""} == {
        "attacks": 3, "detected": 1, "message_survived": 1, "detection_rate": 0.3333, "message_rate": 0.3333,
        "text": "",
    }


def test_a_different_expected_message_is_not_reported_as_surviving(api_client, run_worker, monkeypatch):
    monkeypatch.setattr(attacks, "BATTERY", (BENIGN,))
    marked, _ = _watermarked(api_client, run_worker)
    job = _finished(api_client, run_worker, api_client.post(
        REPORT, {"file": upload("marked.wav", content=marked), "message": "1A2A"}, format="multipart"))
    row = job["result"]["attacks"][0]
    assert row["detected"] and row["message"] == "1A2B" and not row["message_survived"]
    assert row["bit_accuracy"] == pytest.approx(15 / 16)


def test_unwatermarked_file_fails_clearly_and_is_not_billed(api_client, run_worker, monkeypatch):
    monkeypatch.setattr(attacks, "BATTERY", (BENIGN,))
    job = _finished(api_client, run_worker, api_client.post(REPORT, {"file": upload(SPEECH)}, format="multipart"))
    assert job["status"] == "failed" and job["error"]["code"] == "NO_WATERMARK", job
    assert "No watermark was found" in job["error"]["message"]
    assert not UsageEvent.objects.filter(job_id=job["id"]).exists()
    assert Reservation.objects.get(job_id=job["id"]).state == ReservationState.RELEASED

    # Naming the message it should carry turns the same file into a report that says so, attack by attack.
    job = _finished(api_client, run_worker, api_client.post(
        REPORT, {"file": upload(SPEECH), "message": "1A2B"}, format="multipart"))
    assert job["status"] == "succeeded", job
    assert not job["result"]["reference"]["detected"]
    assert job["result"]["summary"]["detected"] == 0


def test_bad_input_is_refused_and_nothing_is_kept(api_client, _isolated_media, settings):
    def refused(data: dict, status: int, code: str) -> dict:
        body = assert_error(api_client.post(REPORT, data, format="multipart"), status, code)
        assert Job.objects.count() == 0 and Reservation.objects.count() == 0
        assert stored_files(_isolated_media) == []
        return body

    refused({"file": upload(SPEECH), "message": "xyz"}, 400, "INVALID_MESSAGE")
    body = refused({"file": upload(SPEECH), "original": upload("notes.wav", content=b"not audio\n" * 50)},
                   415, "INVALID_FORMAT")
    assert body["error"]["details"]["field"] == "original"
    refused({"original": upload(SPEECH)}, 400, "VALIDATION_ERROR")
    settings.WATERMARK_REPORT_MAX_SECONDS = 2.0  # the fixture is 3.9 s
    refused({"file": upload(SPEECH)}, 422, "AUDIO_TOO_LONG")
    settings.WATERMARK_REPORT_MAX_SECONDS = 60.0
    settings.WATERMARK_REPORT_ATTACK_RATE = 100.0  # 3.9 s x 30 attacks x 100: far over the Free plan's hour
    body = refused({"file": upload(SPEECH)}, 402, "QUOTA_EXCEEDED")
    assert body["error"]["details"]["requested_seconds"] > 60 * 60


def test_the_battery_is_listed_with_its_version_and_price(api_client, settings):
    response = api_client.get(ATTACKS)
    assert response.status_code == 200
    body = response.json()
    assert body["version"] == attacks.BATTERY_VERSION
    assert [a["name"] for a in body["attacks"]] == [a.name for a in attacks.BATTERY]
    assert {"name", "family", "description", "params", "changes_length"} <= set(body["attacks"][0])
    assert body["max_duration_seconds"] == settings.WATERMARK_REPORT_MAX_SECONDS
    assert body["billing"]["seconds_per_audio_second"] == pytest.approx(
        len(attacks.BATTERY) * settings.WATERMARK_REPORT_ATTACK_RATE)


def test_the_battery_listing_needs_a_key(client):
    assert_error(client.get(ATTACKS), 401, "UNAUTHENTICATED")
