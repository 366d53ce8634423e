"""Input by URL (``file_url``): fetched through the SSRF guard over real TLS from a local HTTPS server, with
redirects re-checked, size and time limits, and the upload's own validation. Every refusal leaves no job row,
no stored file and no reservation."""

from __future__ import annotations

import pytest

from billing import services as billing_services
from billing.models import PeriodUsage, Reservation
from jobs.models import Job, JobStatus
from testing.assertions import assert_error
from testing.https_files import Route
from testing.uploads import FIXTURES, stored_files, tone_wav_bytes

pytestmark = pytest.mark.django_db(transaction=True)

EMBED = "/api/v1/watermark/embed"
SPEECH = (FIXTURES / "speech_16k_mono.wav").read_bytes()


def assert_nothing_kept(media) -> None:
    """No job, no stored file, no reservation and no reserved seconds: the refusal cost nothing."""
    assert Job.objects.count() == 0
    assert stored_files(media) == []
    assert Reservation.objects.count() == 0
    assert all(usage.reserved_seconds == 0 for usage in PeriodUsage.objects.all())


def test_a_job_from_an_https_url_runs_like_an_upload(api_client, https_files, run_worker, _isolated_media):
    https_files.routes["/audio/speech.wav"] = Route(body=SPEECH, headers={"Content-Type": "audio/wav"})
    response = api_client.post(EMBED, {"file_url": https_files.url("/audio/speech.wav"), "message": "1A2B"},
                               format="multipart")
    assert response.status_code == 202, response.json()
    job = Job.objects.get(pk=response.json()["id"])
    assert job.input["filename"] == "speech.wav" and job.input["size_bytes"] == len(SPEECH)
    assert [p.name for p in stored_files(_isolated_media)] == [job.input_file.rsplit("/", 1)[-1]]
    run_worker(["watermark"])
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, (job.error_code, job.error_message)


def test_redirects_are_followed_to_a_public_target(api_client, https_files):
    https_files.routes["/moved"] = Route(302, headers={"Location": "/audio/final.wav"})
    https_files.routes["/audio/final.wav"] = Route(body=SPEECH)
    response = api_client.post(EMBED, {"file_url": https_files.url("/moved")}, format="multipart")
    assert response.status_code == 202, response.json()
    assert https_files.requests == ["/moved", "/audio/final.wav"]
    assert Job.objects.get().input["filename"] == "final.wav"


def _url_cases(server) -> dict[str, tuple[str, int, str]]:
    port = server.port
    return {
        "loopback_ip": (f"https://127.0.0.1:{port}/audio/speech.wav", 400, "URL_NOT_ALLOWED"),
        "private_10": ("https://10.1.2.3/audio/speech.wav", 400, "URL_NOT_ALLOWED"),
        "ipv6_loopback": (f"https://[::1]:{port}/audio/speech.wav", 400, "URL_NOT_ALLOWED"),
        "metadata": ("https://169.254.169.254/latest/meta-data/", 400, "URL_NOT_ALLOWED"),
        "plain_http": (server.url("/audio/speech.wav").replace("https://", "http://"), 400, "URL_NOT_ALLOWED"),
        "credentials": (server.url("/audio/speech.wav").replace("https://", "https://user:pw@"), 400,
                        "URL_NOT_ALLOWED"),
        "redirect_to_loopback": (server.url("/to-loopback"), 400, "URL_NOT_ALLOWED"),
        "not_found": (server.url("/missing.wav"), 422, "URL_FETCH_FAILED"),
        "server_error": (server.url("/broken"), 422, "URL_FETCH_FAILED"),
        "redirect_loop": (server.url("/loop"), 422, "URL_FETCH_FAILED"),
        "not_audio": (server.url("/notes.wav"), 415, "INVALID_FORMAT"),
        "empty_body": (server.url("/empty.wav"), 400, "EMPTY_FILE"),
        "over_plan_limit_declared": (server.url("/big.wav"), 413, "FILE_TOO_LARGE"),
        "over_plan_limit_streamed": (server.url("/big-chunked.wav"), 413, "FILE_TOO_LARGE"),
    }


URL_CASES = sorted(
    ["loopback_ip", "private_10", "ipv6_loopback", "metadata", "plain_http", "credentials", "redirect_to_loopback",
     "not_found", "server_error", "redirect_loop", "not_audio", "empty_body", "over_plan_limit_declared",
     "over_plan_limit_streamed"]
)


@pytest.mark.parametrize("case", URL_CASES)
def test_bad_urls_are_refused_with_a_stable_code_and_nothing_kept(api_client, tenant, https_files, _isolated_media,
                                                                  case):
    big = tone_wav_bytes(4.0)  # 128 KB, over the plan limit set below
    billing_services.change_subscription(tenant, overrides={"max_file_bytes": 100_000})
    https_files.routes.update({
        "/audio/speech.wav": Route(body=SPEECH),
        "/to-loopback": Route(302, headers={"Location": f"https://127.0.0.1:{https_files.port}/audio/speech.wav"}),
        "/broken": Route(503, b"down"),
        "/loop": Route(302, headers={"Location": "/loop"}),
        "/notes.wav": Route(body=b"this is not audio at all\n" * 40, headers={"Content-Type": "audio/wav"}),
        "/empty.wav": Route(body=b""),
        "/big.wav": Route(body=big),
        "/big-chunked.wav": Route(body=big, chunked=True),  # no Content-Length: counted while streaming
    })
    url, status, code = _url_cases(https_files)[case]
    body = assert_error(api_client.post(EMBED, {"file_url": url}, format="multipart"), status, code)
    details = body["error"]["details"]
    assert details["field"] == "file_url"
    if case == "not_found":
        assert details["upstream_status"] == 404
    if case == "server_error":
        assert details["upstream_status"] == 503
    if case == "redirect_loop":
        assert details["reason"] == "too_many_redirects"
    if case.startswith("over_plan_limit"):
        assert details["limit_bytes"] == 100_000
    if case in ("loopback_ip", "private_10", "ipv6_loopback", "metadata", "plain_http", "credentials"):
        assert https_files.requests == []  # refused before any connection
    assert_nothing_kept(_isolated_media)


def test_a_stalled_server_times_out(api_client, https_files, settings, _isolated_media):
    settings.FILE_URL_READ_TIMEOUT_SECONDS = 0.5
    https_files.routes["/slow.wav"] = Route(body=SPEECH, delay=2.0)
    body = assert_error(api_client.post(EMBED, {"file_url": https_files.url("/slow.wav")}, format="multipart"),
                        422, "URL_FETCH_FAILED")
    assert body["error"]["details"]["reason"] == "timeout"
    assert_nothing_kept(_isolated_media)


def test_an_untrusted_certificate_is_refused(api_client, https_files, settings, _isolated_media):
    settings.FILE_URL_CA_BUNDLE = ""  # the self-signed certificate is no longer trusted
    https_files.routes["/audio/speech.wav"] = Route(body=SPEECH)
    body = assert_error(api_client.post(EMBED, {"file_url": https_files.url("/audio/speech.wav")},
                                        format="multipart"), 422, "URL_FETCH_FAILED")
    assert body["error"]["details"]["reason"] == "tls"
    assert_nothing_kept(_isolated_media)


def test_exactly_one_source(api_client, https_files, _isolated_media):
    from testing.uploads import upload

    both = {"file": upload("speech_16k_mono.wav"), "file_url": https_files.url("/a.wav")}
    assert_error(api_client.post(EMBED, both, format="multipart"), 400, "VALIDATION_ERROR")
    assert_error(api_client.post(EMBED, {"message": "1A2B"}, format="multipart"), 400, "VALIDATION_ERROR")
    assert_nothing_kept(_isolated_media)


def test_a_replayed_idempotency_key_does_not_fetch_again(api_client, https_files):
    https_files.routes["/audio/speech.wav"] = Route(body=SPEECH)
    form = {"file_url": https_files.url("/audio/speech.wav"), "message": "1A2B"}
    first = api_client.post(EMBED, form, format="multipart", HTTP_IDEMPOTENCY_KEY="url-1")
    again = api_client.post(EMBED, form, format="multipart", HTTP_IDEMPOTENCY_KEY="url-1")
    assert first.status_code == again.status_code == 202
    assert again["Idempotent-Replayed"] == "true" and again.json()["id"] == first.json()["id"]
    assert https_files.requests == ["/audio/speech.wav"]
    assert Job.objects.count() == 1
