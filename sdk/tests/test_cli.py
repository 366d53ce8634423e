"""The ``studio`` commands' wiring against scripted answers: what each sends, writes, prints and exits with.
The directory mode against a live server and worker is in ``test_live.py``."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from audioseal_studio import Client, cli
from typer.testing import CliRunner

JOB_ID = "11111111-2222-3333-4444-555555555555"
CONFIG = ["--api-key", "ask_cli", "--base-url", "http://studio.test"]


class Server:
    """Answers like the API: job creations succeed at once (``wait``), outputs download, reads list."""

    def __init__(self, kind: str, result: dict, output: bytes = b"OUTPUT", filename: str = "out.bin") -> None:
        self.kind, self.result, self.output, self.filename = kind, result, output, filename
        self.requests: list[httpx.Request] = []

    def job(self) -> dict:
        return {"id": JOB_ID, "kind": self.kind, "status": "succeeded", "result": self.result,
                "output_url": f"http://studio.test/api/v1/jobs/{JOB_ID}/output", "input": {"filename": "in"}}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        path = request.url.path
        if path.endswith("/output"):
            return httpx.Response(200, content=self.output,
                                  headers={"Content-Disposition": f'attachment; filename="{self.filename}"'})
        if path.endswith("/jobs"):
            return httpx.Response(200, json={"next": None, "results": [self.job()]})
        if path.endswith("/usage"):
            return httpx.Response(200, json={"plan": {"code": "free", "name": "Free"},
                                             "subscription": {"status": "active"},
                                             "minutes": {"used": 1.5, "included": 60, "remaining": 58.5},
                                             "by_kind": [{"kind": "watermark_embed", "jobs": 3, "minutes": 1.5}]})
        return httpx.Response(202, json=self.job())


@pytest.fixture
def serve(monkeypatch):
    """Route the CLI's client to a scripted server."""

    def install(server: Server) -> Server:
        monkeypatch.setattr(cli, "Client", lambda *a, **kw: Client(*a, transport=httpx.MockTransport(server), **kw))
        return server

    return install


def run(*args: str):
    return CliRunner(env={"COLUMNS": "160"}).invoke(cli.app, [*args, *CONFIG])


def test_beatsync_uploads_video_and_music_and_saves_the_synced_video(serve, tmp_path):
    server = serve(Server("beatsync", {"offset_seconds": 1.25}, b"MP4", "dance-synced.mp4"))
    (tmp_path / "dance.mp4").write_bytes(b"video")
    (tmp_path / "track.mp3").write_bytes(b"music")
    result = run("beatsync", str(tmp_path / "dance.mp4"), str(tmp_path / "track.mp3"), "--trim-silence",
                 "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "dance-synced.mp4").read_bytes() == b"MP4"
    assert "offset +1.250 s" in result.stdout
    created = server.requests[0]
    assert created.url.path == "/api/v1/beatsync/align" and created.headers["Idempotency-Key"]
    for part in (b'name="video"; filename="dance.mp4"', b'name="music"; filename="track.mp3"'):
        assert part in created.content


def test_emotion_downloads_the_embedding_only_when_asked(serve, tmp_path):
    server = serve(Server("emotion", {"top": {"label": "happy", "score": 0.91}}, b"NPY", "call-embedding.npy"))
    (tmp_path / "call.wav").write_bytes(b"audio")
    plain = run("emotion", str(tmp_path / "call.wav"), "--out", str(tmp_path), "--json")
    assert plain.exit_code == 0 and json.loads(plain.stdout)["job"]["result"]["top"]["label"] == "happy"
    assert not (tmp_path / "call-embedding.npy").exists()
    with_embedding = run("emotion", str(tmp_path / "call.wav"), "--embedding", "--out", str(tmp_path))
    assert with_embedding.exit_code == 0, with_embedding.output
    assert (tmp_path / "call-embedding.npy").read_bytes() == b"NPY" and "happy (0.91)" in with_embedding.stdout
    assert b'name="extract_embedding"\r\n\r\ntrue' in server.requests[-2].content


def test_jobs_and_usage_print_tables_or_json(serve):
    serve(Server("watermark_embed", {"message": "1A2B", "snr_db": 22.0}))
    listed = run("jobs", "--status", "succeeded", "--limit", "5")
    assert listed.exit_code == 0 and JOB_ID in listed.stdout and "message 1A2B" in listed.stdout
    usage = run("usage")
    assert usage.exit_code == 0 and "Minutes: 1.50 used" in usage.stdout and "58.50 remaining" in usage.stdout
    assert json.loads(run("usage", "--json").stdout)["plan"]["code"] == "free"


def test_an_api_error_exits_1_with_its_code(monkeypatch):
    refused = httpx.Response(401, json={"error": {"code": "INVALID_API_KEY", "message": "The API key is not valid."}})
    monkeypatch.setattr(cli, "Client", lambda *a, **kw: Client(*a, transport=httpx.MockTransport(lambda r: refused),
                                                               **kw))
    result = run("usage")
    assert result.exit_code == 1 and "INVALID_API_KEY" in result.stderr


def test_an_empty_directory_or_no_key_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.delenv("STUDIO_API_KEY", raising=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run("detect", str(empty)).exit_code == 2
    (empty / "a.wav").write_bytes(b"x")
    no_key = CliRunner().invoke(cli.app, ["detect", str(empty)])
    assert no_key.exit_code == 2 and "STUDIO_API_KEY" in no_key.stderr


def test_the_console_script_is_declared():
    text = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    assert 'studio = "audioseal_studio.cli:main"' in text
