"""The SDK's behaviour at the HTTP level, against scripted answers (httpx's MockTransport): which answers are
retried and after how long, that a retried creation resends the same Idempotency-Key and bytes, how errors
map to exceptions, pagination, long-polling and downloads. The same paths against a real server and worker
are in ``test_live.py``."""

from __future__ import annotations

import email.utils
import time
from pathlib import Path

import httpx
import pytest
from audioseal_studio import (
    APIConnectionError,
    AuthenticationError,
    Client,
    DetectionResult,
    EmbedResult,
    Job,
    RateLimitError,
    RetryPolicy,
    ServerError,
    StudioError,
    UnsupportedMediaError,
    WaitTimeoutError,
)

BASE = "http://studio.test"
KEY = "ask_test_key"


def job_json(status: str = "queued", **extra) -> dict:
    return {"id": "11111111-2222-3333-4444-555555555555", "kind": "watermark_embed", "status": status,
            "callback_url": "", "result": None, **extra}


def error(status: int, code: str, message: str = "no", headers: dict | None = None) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message, "details": {}}},
                          headers={"X-Request-ID": "req-42", **(headers or {})})


class Script:
    """A MockTransport that answers each request with the next scripted reply (a response, an exception to
    raise, or a callable of the request) and records what it was sent."""

    def __init__(self, *replies) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, Exception):
            raise reply
        return reply(request) if callable(reply) else reply


def client_for(script: Script, sleeps: list[float] | None = None, **kwargs) -> Client:
    client = Client(KEY, base_url=BASE, transport=httpx.MockTransport(script), **kwargs)
    client.sleep = (sleeps.append if sleeps is not None else (lambda _: None))
    return client


@pytest.fixture
def audio(tmp_path) -> Path:
    path = tmp_path / "speech.wav"
    path.write_bytes(b"RIFF....WAVEfmt fake audio bytes")
    return path


def _parts(request: httpx.Request) -> bytes:
    """The multipart body without its (random) boundary."""
    boundary = request.headers["Content-Type"].split("boundary=")[1].encode()
    return request.content.replace(boundary, b"")


# --- retries -------------------------------------------------------------------------------------------------


def test_a_429_waits_what_retry_after_says_then_succeeds():
    script = Script(error(429, "RATE_LIMITED", headers={"Retry-After": "3"}), httpx.Response(200, json={}))
    sleeps, events = [], []
    client = client_for(script, sleeps, on_retry=events.append)
    client.usage()
    assert sleeps == [3.0]
    assert len(script.requests) == 2
    assert (events[0].attempt, events[0].status, events[0].reason) == (1, 429, "RATE_LIMITED")


def test_retry_after_as_an_http_date():
    when = email.utils.formatdate(time.time() + 5, usegmt=True)
    script = Script(httpx.Response(503, headers={"Retry-After": when}), httpx.Response(200, json={}))
    sleeps: list[float] = []
    client_for(script, sleeps).usage()
    assert 3.0 <= sleeps[0] <= 5.0


def test_a_retry_after_longer_than_the_cap_is_raised_at_once_with_its_value():
    script = Script(error(429, "RATE_LIMITED", headers={"Retry-After": "3600"}))
    client = client_for(script, retry=RetryPolicy(max_retry_after=60))
    with pytest.raises(RateLimitError) as raised:
        client.usage()
    assert raised.value.retry_after == 3600 and raised.value.code == "RATE_LIMITED"
    assert len(script.requests) == 1


def test_retries_stop_after_max_retries_with_the_last_error():
    script = Script(error(429, "TOO_MANY_WAITS", headers={"Retry-After": "1"}))
    with pytest.raises(RateLimitError) as raised:
        client_for(script, retry=RetryPolicy(max_retries=2)).get_job("x", wait=5)
    assert raised.value.code == "TOO_MANY_WAITS" and len(script.requests) == 3


def test_a_503_without_retry_after_backs_off_exponentially():
    script = Script(httpx.Response(503), httpx.Response(503), httpx.Response(200, json=job_json()))
    sleeps: list[float] = []
    client_for(script, sleeps, retry=RetryPolicy(backoff_base=0.5, jitter=False)).get_job("x")
    assert sleeps == [0.5, 1.0]


def test_a_500_is_not_retried_and_carries_the_request_id():
    script = Script(error(500, "INTERNAL_ERROR", "Something broke."))
    with pytest.raises(ServerError) as raised:
        client_for(script).get_job("x")
    assert (raised.value.status, raised.value.request_id, raised.value.message) == (500, "req-42", "Something broke.")
    assert len(script.requests) == 1


def test_a_lost_answer_to_a_creation_is_retried_with_the_same_key_and_bytes(audio):
    script = Script(httpx.ReadError("connection reset"), httpx.Response(202, json=job_json()))
    client = client_for(script)
    job = client.embed(audio, message="1A2B")
    first, second = script.requests
    key = first.headers["Idempotency-Key"]
    assert key and second.headers["Idempotency-Key"] == key  # generated by default, reused on the retry
    assert _parts(first) == _parts(second) and b"fake audio bytes" in second.content
    assert job.id == job_json()["id"]


def test_each_creation_gets_its_own_key_unless_one_is_given(audio):
    script = Script(httpx.Response(202, json=job_json()))
    client = client_for(script)
    client.detect(audio)
    client.detect(audio)
    client.detect(audio, idempotency_key="my-key-1")
    keys = [r.headers["Idempotency-Key"] for r in script.requests]
    assert keys[0] != keys[1] and keys[2] == "my-key-1"


def test_a_post_without_a_key_is_not_resent_after_a_lost_connection():
    script = Script(httpx.ConnectError("refused"), httpx.Response(200, json=job_json("canceled")))
    with pytest.raises(APIConnectionError):
        client_for(script).cancel("x")
    assert len(script.requests) == 1


def test_a_read_is_retried_after_a_connection_error():
    script = Script(httpx.ConnectError("refused"), httpx.Response(200, json=job_json()))
    assert client_for(script).get_job("x").status == "queued"


# --- errors --------------------------------------------------------------------------------------------------


def test_api_errors_carry_code_message_status_and_request_id():
    script = Script(error(401, "INVALID_API_KEY", "The API key is not valid."))
    with pytest.raises(AuthenticationError) as raised:
        client_for(script).usage()
    err = raised.value
    assert (err.code, err.status, err.request_id, err.message) == (
        "INVALID_API_KEY", 401, "req-42", "The API key is not valid.")
    assert "INVALID_API_KEY" in str(err) and "req-42" in str(err)


def test_an_error_body_that_is_not_ours_still_becomes_an_error():
    script = Script(httpx.Response(502, text="<html>Bad gateway</html>"))
    with pytest.raises(ServerError) as raised:
        client_for(script, retry=RetryPolicy(max_retries=0)).usage()
    assert raised.value.code == "HTTP_502" and "Bad gateway" in raised.value.message


def test_an_unsupported_file_is_a_typed_error(audio):
    with pytest.raises(UnsupportedMediaError) as raised:
        client_for(Script(error(415, "INVALID_FORMAT", "Not audio."))).embed(audio)
    assert raised.value.code == "INVALID_FORMAT"


def test_no_api_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("STUDIO_API_KEY", raising=False)
    with pytest.raises(StudioError, match="STUDIO_API_KEY"):
        Client(base_url=BASE)


def test_configuration_from_the_environment(monkeypatch):
    monkeypatch.setenv("STUDIO_API_KEY", "ask_env")
    monkeypatch.setenv("STUDIO_BASE_URL", "https://studio.example/api/v1/")
    script = Script(httpx.Response(200, json={}))
    client = Client(transport=httpx.MockTransport(script))
    client.usage()
    assert str(script.requests[0].url) == "https://studio.example/api/v1/usage"
    assert script.requests[0].headers["Authorization"] == "Bearer ask_env"


# --- models --------------------------------------------------------------------------------------------------


def test_results_are_typed_by_kind_and_unknown_fields_are_kept():
    job = Job.model_validate(job_json(
        "succeeded", kind="watermark_detect", new_top_level_field=7,
        result={"detected": True, "message": "1A2B", "segments": [{"start_seconds": 0.1, "end_seconds": 2.0,
                                                                    "message": "1A2B", "extra": "kept"}]},
    ))
    assert isinstance(job.result, DetectionResult)
    assert job.result.segments[0].extra == "kept" and job.new_top_level_field == 7
    assert job.callback_url is None and job.is_final and job.succeeded
    embed = Job.model_validate(job_json("succeeded", result={"message": "1A2B", "bits": [0] * 16, "snr_db": 22.1}))
    assert isinstance(embed.result, EmbedResult) and embed.result.snr_db == 22.1
    odd = Job.model_validate(job_json("succeeded", kind="watermark_embed", result={"bits": "not a list"}))
    assert odd.result == {"bits": "not a list"}  # does not fit its model: kept as sent, the job still reads


# --- waiting, listing, downloads ---------------------------------------------------------------------------


def test_wait_long_polls_in_server_sized_steps_until_final():
    script = Script(httpx.Response(200, json=job_json("running")), httpx.Response(200, json=job_json("succeeded")))
    job = client_for(script).wait("x", timeout=300)
    assert job.status == "succeeded"
    waits = [float(r.url.params["wait"]) for r in script.requests]
    assert waits == [30.0, 30.0]  # never more than the server's cap


def test_wait_gives_up_at_its_deadline():
    def held(request: httpx.Request) -> httpx.Response:
        time.sleep(min(float(request.url.params.get("wait", 0)), 0.05))
        return httpx.Response(200, json=job_json("queued"))

    with pytest.raises(WaitTimeoutError) as raised:
        client_for(Script(held)).wait(Job.model_validate(job_json()), timeout=0.3)
    assert raised.value.job.status == "queued"


def test_creating_with_wait_keeps_polling_past_the_first_answer(audio):
    script = Script(httpx.Response(202, json=job_json("running")), httpx.Response(200, json=job_json("succeeded")))
    job = client_for(script).embed(audio, wait=45)
    assert job.status == "succeeded"
    assert script.requests[0].url.params["wait"] == "30" and script.requests[1].url.path.endswith("/jobs/" + job.id)


def test_iter_jobs_follows_the_cursor_of_each_next_link():
    def page(request: httpx.Request) -> httpx.Response:
        cursor = request.url.params.get("cursor")
        if cursor is None:  # `next` names the server's own host: only its cursor is reused
            return httpx.Response(200, json={"next": "http://internal:8000/api/v1/jobs?cursor=abc&page_size=2",
                                             "results": [job_json(id="a"), job_json(id="b")]})
        assert cursor == "abc" and request.url.host == "studio.test"
        return httpx.Response(200, json={"next": None, "results": [job_json(id="c")]})

    script = Script(page)
    assert [job.id for job in client_for(script).iter_jobs(page_size=2)] == ["a", "b", "c"]
    limited = Script(page)
    assert [job.id for job in client_for(limited).iter_jobs(page_size=2, limit=2)] == ["a", "b"]
    assert len(limited.requests) == 1  # the limit reached: no further page fetched


def test_a_download_follows_a_redirect_without_sending_the_api_key_elsewhere(tmp_path):
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.host == "studio.test":
            return httpx.Response(302, headers={"Location": "https://bucket.s3.test/out.wav?X-Amz-Signature=s"})
        assert "Authorization" not in request.headers
        return httpx.Response(200, content=b"WAVDATA",
                              headers={"Content-Disposition": 'attachment; filename="../speech-watermarked.wav"'})

    script = Script(answer)
    written = client_for(script).download_output("x", tmp_path)
    assert written == tmp_path / "speech-watermarked.wav" and written.read_bytes() == b"WAVDATA"
    assert script.requests[0].headers["Authorization"] == f"Bearer {KEY}"


def test_a_failed_download_leaves_no_file(tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()

    def broken_body():
        yield b"RIFF-first-chunk"
        raise httpx.ReadError("connection reset mid-file")

    refused = Script(error(404, "FILE_NOT_FOUND", "This job has no output (yet)."))
    with pytest.raises(StudioError):
        client_for(refused).download_output("x", downloads / "out.wav")
    cut = Script(lambda request: httpx.Response(200, content=broken_body()))
    with pytest.raises(APIConnectionError):
        client_for(cut).download_output("x", downloads / "out.wav")
    assert list(downloads.iterdir()) == []


def test_beatsync_sends_both_files_and_its_flag(tmp_path):
    (tmp_path / "v.mp4").write_bytes(b"video")
    (tmp_path / "m.mp3").write_bytes(b"music")
    seen: list[bytes] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx.Response(202, json=job_json(kind="beatsync"))

    client_for(Script(answer)).beatsync(tmp_path / "v.mp4", tmp_path / "m.mp3", trim_silence=True)
    body = seen[0]
    for part in (b'name="video"; filename="v.mp4"', b'name="music"; filename="m.mp3"', b'name="trim_silence"'):
        assert part in body
    assert b"\r\n\r\ntrue\r\n" in body

