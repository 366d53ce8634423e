"""The watermark endpoints end to end: real PostgreSQL, real Redis, the real worker code and the demo
AudioSeal checkpoints loaded through ``AudioSeal.load_generator/load_detector``."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from jobs.models import Job, JobStatus
from media_ops import audio
from media_ops.watermark import snr_db
from testing.assertions import assert_error
from testing.uploads import FIXTURES, stored_files, upload

pytestmark = pytest.mark.django_db(transaction=True)

EMBED = "/api/v1/watermark/embed"
DETECT = "/api/v1/watermark/detect"


def _output_bytes(client, job_id) -> bytes:
    response = client.get(f"/api/v1/jobs/{job_id}/output")
    assert response.status_code == 200, response
    return b"".join(response.streaming_content)


def _run(client, run_worker, url, file, **data) -> dict:
    response = client.post(url, {"file": file, **data}, format="multipart")
    assert response.status_code == 202, response.json()
    job = response.json()
    assert job["status"] == "queued"
    run_worker()
    job = client.get(f"/api/v1/jobs/{job['id']}").json()
    assert job["status"] == "succeeded", job
    return job


@pytest.mark.parametrize(
    "fixture", ["speech_16k_mono.wav", "speech_44k_stereo.flac", "speech.mp3", "speech.m4a"]
)
def test_embed_keeps_format_and_detect_finds_the_watermark(api_client, run_worker, tmp_path, fixture):
    original, rate = audio.decode(FIXTURES / fixture)
    info = audio.probe(FIXTURES / fixture)

    job = _run(api_client, run_worker, EMBED, upload(fixture), message="1A2B")
    assert job["kind"] == "watermark_embed"
    assert job["result"]["message"] == "1A2B"
    assert job["model"]["name"] and job["model"]["version"]
    assert job["input"]["format"] == info.format and job["input"]["channels"] == info.channels

    out_path = tmp_path / f"out{audio.FILE_EXTENSIONS[info.format]}"
    out_path.write_bytes(_output_bytes(api_client, job["id"]))
    assert audio.sniff_format(out_path) == info.format
    marked, marked_rate = audio.decode(out_path)
    assert marked_rate == rate
    assert marked.shape == original.shape  # same channels and the same length, sample for sample
    # The watermark is at least 20 dB below the signal (measured on the decoded output, codec included
    # for lossless formats; for lossy ones the codec's own error dominates, so measure before encoding).
    if info.format in ("wav", "flac"):
        assert snr_db(original, marked) >= 20
    assert job["result"]["snr_db"] >= 20

    detected = _run(api_client, run_worker, DETECT, upload(fixture, as_name=f"marked-{fixture}",
                                                              content=out_path.read_bytes()))
    assert detected["result"]["detected"] is True
    assert detected["result"]["probability"] >= 0.9
    # The product's whole promise: the 16-bit message comes back, through resampling and lossy codecs too.
    assert detected["result"]["message"] == "1A2B"
    assert detected["result"]["bits"] == [int(b) for b in f"{0x1A2B:016b}"]
    values = detected["result"]["localization"]["values"]
    assert detected["result"]["localization"]["hop_seconds"] == 0.01
    assert len(values) == pytest.approx(info.duration_seconds * 100, abs=2)

    clean = _run(api_client, run_worker, DETECT, upload(fixture))
    assert clean["result"]["detected"] is False
    assert clean["result"]["probability"] <= 0.1
    assert clean["result"]["message"] is None


def test_random_message_when_omitted(api_client, run_worker):
    job = _run(api_client, run_worker, EMBED, upload("speech_16k_mono.wav"))
    assert len(job["result"]["message"]) == 4
    int(job["result"]["message"], 16)
    assert job["params"]["message"] == job["result"]["message"]


def test_output_format_can_be_requested(api_client, run_worker, tmp_path):
    job = _run(api_client, run_worker, EMBED, upload("speech_16k_mono.wav"), output_format="flac")
    path = tmp_path / "o.flac"
    path.write_bytes(_output_bytes(api_client, job["id"]))
    assert audio.sniff_format(path) == "flac"
    assert sf.info(path).samplerate == 16000


def test_message_reaches_the_generator_and_detector_bits_come_back_as_hex(api_client, run_worker):
    """At the model boundary: spy on the real generator's input and drive the real detector's bit logits."""
    import torch

    from jobs.worker.pool import get_pool

    models = get_pool().get("watermark")
    seen: list[list[int]] = []
    original_get_watermark = models.generator.get_watermark

    def spy(x, sample_rate=None, message=None):
        seen.append(message[0].tolist())
        return original_get_watermark(x, sample_rate=sample_rate, message=message)

    models.generator.get_watermark = spy
    try:
        _run(api_client, run_worker, EMBED, upload("speech_16k_mono.wav"), message="c3a5")
    finally:
        del models.generator.get_watermark
    assert seen and seen[0] == [1, 1, 0, 0, 0, 0, 1, 1, 1, 0, 1, 0, 0, 1, 0, 1]  # 0xC3A5, MSB first

    # Detector side: force the last conv's bit logits to spell 0x5A0F and its detection logits to "present".
    wanted = [0, 1, 0, 1, 1, 0, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1]
    last = models.detector.detector[-1]

    def force(module, inputs, output):
        output = output.clone()
        output[:, 0, :], output[:, 1, :] = -10.0, 10.0
        output[:, 2:, :] = torch.tensor([10.0 if b else -10.0 for b in wanted])[None, :, None]
        return output

    handle = last.register_forward_hook(force)
    try:
        job = _run(api_client, run_worker, DETECT, upload("speech_16k_mono.wav"))
    finally:
        handle.remove()
    assert job["result"]["detected"] is True
    assert job["result"]["bits"] == wanted
    assert job["result"]["message"] == "5A0F"


def test_pool_loads_each_model_once_per_worker_process(api_client, run_worker):
    from jobs.worker import pool

    pool.reset_pool()
    for _ in range(3):  # three bursts of work in the same process (within the Free plan's concurrency)
        for url in (EMBED, DETECT):
            response = api_client.post(url, {"file": upload("speech_16k_mono.wav")}, format="multipart")
            assert response.status_code == 202, response.json()
        run_worker()
    assert Job.objects.filter(status=JobStatus.SUCCEEDED).count() == 6
    assert pool.get_pool().load_counts["watermark"] == 1


# --- bad input (the cases shared by every audio endpoint are in test_uploads.py) ------------------------


@pytest.mark.parametrize("message", ["12345", "XYZW", "1A2", "0x1A2B", "1A 2B", " 1A2B", "1A2B\n"])
def test_bad_message(api_client, _isolated_media, message):
    response = api_client.post(EMBED, {"file": upload("speech_16k_mono.wav"), "message": message},
                               format="multipart")
    assert_error(response, 400, "INVALID_MESSAGE")
    assert Job.objects.count() == 0 and stored_files(_isolated_media) == []


def test_missing_file(api_client):
    assert_error(api_client.post(EMBED, {"message": "1A2B"}, format="multipart"), 400, "VALIDATION_ERROR")


def test_format_is_sniffed_not_taken_from_the_name(api_client):
    wav = (FIXTURES / "speech_16k_mono.wav").read_bytes()
    response = api_client.post(EMBED, {"file": upload("x", as_name="song.mp3", content=wav)}, format="multipart")
    assert response.status_code == 202
    assert response.json()["input"]["format"] == "wav"


def test_decoded_output_is_valid_audio_for_players(api_client, run_worker):
    job = _run(api_client, run_worker, EMBED, upload("speech_16k_mono.wav"), message="0001")
    data, rate = sf.read(io.BytesIO(_output_bytes(api_client, job["id"])))
    assert rate == 16000 and np.isfinite(data).all() and np.abs(data).max() <= 1.0


# --- detection after edits: regions, polarity, trims, crops (issue 15) ------------------------------------------


def _wav(samples: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.clip(samples, -1.0, 1.0).T, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _embedded(client, run_worker, message: str) -> tuple[np.ndarray, int]:
    """The first speech fixture watermarked through the API, decoded: (channels, samples), rate."""
    job = _run(client, run_worker, EMBED, upload("speech_16k_mono.wav"), message=message)
    samples, rate = sf.read(io.BytesIO(_output_bytes(client, job["id"])), dtype="float32", always_2d=True)
    return samples.T, rate


def _detect_bytes(client, run_worker, content: bytes) -> dict:
    return _run(client, run_worker, DETECT, upload("x.wav", as_name="edited.wav", content=content))["result"]


def test_detect_reports_the_watermarked_region_of_a_spliced_file(api_client, run_worker):
    marked, rate = _embedded(api_client, run_worker, "C0DE")
    clean, _ = audio.decode(FIXTURES / "speech2_16k_mono.wav")
    spliced = np.concatenate([clean, marked, clean[:, ::-1]], axis=1)
    result = _detect_bytes(api_client, run_worker, _wav(spliced, rate))
    assert result["detected"] is True and result["summary"] == "Watermark found in 1 region"
    assert result["probability"] < 0.5  # a minority of the file: the old whole-file rule said "no"
    [seg] = result["segments"]
    assert seg["start_seconds"] == pytest.approx(clean.shape[-1] / rate, abs=0.1)
    assert seg["end_seconds"] == pytest.approx((clean.shape[-1] + marked.shape[-1]) / rate, abs=0.1)
    assert seg["message"] == "C0DE" and result["message"] == "C0DE"
    assert seg["bits"] == [int(b) for b in f"{0xC0DE:016b}"]


@pytest.mark.parametrize(
    ("edit", "offset", "polarity"),
    [("inverted", 0, -1), ("trim 1", 1, 1), ("trim 123", 123, 1), ("trim 319", 319, 1), ("crop", None, 1)],
)
def test_detect_reads_the_message_after_an_edit(api_client, run_worker, edit, offset, polarity):
    marked, rate = _embedded(api_client, run_worker, "1A2B")
    n = marked.shape[-1]
    if edit == "inverted":
        edited = -marked
    elif edit == "crop":  # keep the middle half
        edited, offset = marked[:, n // 4 : n // 4 + n // 2], (n // 4) % 320
    else:
        edited = marked[:, offset:]
    result = _detect_bytes(api_client, run_worker, _wav(edited, rate))
    assert result["detected"] is True
    assert result["message"] == "1A2B"
    assert result["alignment"] == {"offset_samples": offset, "polarity": polarity, "speed": 1.0}
    assert len(result["segments"]) == 1


def test_clean_audio_stays_negative_inverted_or_shifted(api_client, run_worker):
    clean, rate = audio.decode(FIXTURES / "speech_16k_mono.wav")
    for samples in (clean, -clean, clean[:, 123:], -clean[:, 200:]):
        result = _detect_bytes(api_client, run_worker, _wav(samples, rate))
        assert result["detected"] is False
        assert result["segments"] == [] and result["message"] is None
        assert result["summary"] == "No watermark found"
