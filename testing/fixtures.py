"""The pytest fixtures every app's tests share (a plugin: the root ``conftest.py`` names it in
``pytest_plugins``). Plain helpers live beside them in ``testing/``: import those explicitly."""

from __future__ import annotations

from pathlib import Path

import pytest
from rest_framework.test import APIClient

from accounts import services
from testing.factories import People, client_for, make_people
from testing.workers import worker_env

# --- tenants, keys and people ------------------------------------------------------------------------------


@pytest.fixture
def make_tenant(db):
    counter = {"n": 0}

    def make(name: str | None = None, **kwargs):
        counter["n"] += 1
        return services.create_tenant(name or f"Tenant {counter['n']}", **kwargs)

    return make


@pytest.fixture
def tenant(make_tenant):
    return make_tenant("Acme")


@pytest.fixture
def api_key(tenant):
    return services.issue_api_key(tenant, "test")


@pytest.fixture
def api_client(api_key) -> APIClient:
    return client_for(api_key.secret)


@pytest.fixture
def other_tenant(make_tenant):
    return make_tenant("Globex")


@pytest.fixture
def other_client(other_tenant) -> APIClient:
    return client_for(services.issue_api_key(other_tenant, "other").secret)


@pytest.fixture
def fast_passwords(settings):
    """The production hasher costs ~0.5 s per password; the dashboard tests create several users each."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def people(db, fast_passwords) -> People:
    """Acme (owner, admin, member), Globex (its owner) and a staff user: see ``testing.factories.People``."""
    return make_people()


# --- Redis and workers -------------------------------------------------------------------------------------


@pytest.fixture
def redis_clean(settings):
    """A clean Redis for tests that enqueue: queues, registries and rate-limit counters start empty."""
    import django_rq

    connection = django_rq.get_connection("watermark")
    connection.flushdb()
    yield connection
    connection.flushdb()


@pytest.fixture
def run_worker(redis_clean):
    """Run the real worker code (PoolWorker, real Redis) in-process until the queues are empty."""
    from jobs.worker.rq_worker import build_worker, default_queues

    def run(queues: list[str] | None = None) -> None:
        worker = build_worker(queues or default_queues())
        worker.work(burst=True, logging_level="WARNING")

    return run


@pytest.fixture
def worker_process(redis_clean, _isolated_media, tmp_path):
    """Start real ``manage.py run_worker`` processes; they are stopped (SIGTERM, then SIGKILL) at teardown.

    Each worker's output goes to ``tmp_path/worker-<n>.log`` (a pipe nobody reads would block a chatty worker).
    """
    import subprocess
    import sys

    from django.conf import settings

    procs: list[subprocess.Popen] = []
    logs = []

    def start(*args: str) -> subprocess.Popen:
        logs.append(open(tmp_path / f"worker-{len(procs)}.log", "wb"))  # noqa: SIM115 - closed at teardown
        proc = subprocess.Popen(
            [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "run_worker", *args],
            env=worker_env(_isolated_media),
            stdout=logs[-1],
            stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    for log in logs:
        log.close()


# --- provenance (C2PA) --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _dev_chain_dir(tmp_path_factory) -> Path:
    from media_ops.provenance import ensure_dev_chain

    directory = tmp_path_factory.mktemp("c2pa-dev-chain")
    ensure_dev_chain(directory)
    return directory


@pytest.fixture
def dev_signing(settings, _dev_chain_dir):
    """Sign embed outputs with a development chain (made once per session) and trust its CA in verify."""
    from media_ops.provenance import devchain

    settings.PROVENANCE_MANIFESTS = True
    settings.PROVENANCE_SIGNING_CERT_CHAIN = str(_dev_chain_dir / devchain.CHAIN_FILE)
    settings.PROVENANCE_SIGNING_KEY = str(_dev_chain_dir / devchain.KEY_FILE)
    settings.PROVENANCE_SIGNING_HOOK = ""
    settings.PROVENANCE_TRUST_ANCHORS = str(_dev_chain_dir / devchain.CA_FILE)
    return _dev_chain_dir


# --- input by URL and direct uploads -------------------------------------------------------------------------


@pytest.fixture
def https_files(settings, monkeypatch, tmp_path):
    """A local HTTPS file server (``testing.https_files``) whose host name resolves to 127.0.0.1, is the one
    host exempt from the SSRF guard for ``file_url``, and whose self-signed certificate is trusted."""
    from testing.dns import fake_dns
    from testing.https_files import HOST, HTTPSFileServer

    server = HTTPSFileServer(tmp_path).start()
    fake_dns(monkeypatch, {HOST: "127.0.0.1"})
    settings.FILE_URL_ALLOWED_HOSTS = [HOST]
    settings.FILE_URL_CA_BUNDLE = str(server.cert)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_s3():
    """moto's S3 server (``testing.servers.MotoS3Server``), one per test session that asks for it."""
    from testing.servers import MotoS3Server

    server = MotoS3Server()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(moto_s3, settings):
    """A fresh private bucket made the default storage exactly as settings.py does for STORAGE_BUCKET;
    yields (bucket name, boto3 client)."""
    import uuid

    name = f"audioseal-{uuid.uuid4().hex[:10]}"
    client = moto_s3.client()
    client.create_bucket(Bucket=name)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "audioseal_site.storage.PrivateS3Storage", "OPTIONS": {
            "bucket_name": name, "endpoint_url": moto_s3.endpoint, "region_name": "us-east-1",
            "access_key": "testing", "secret_key": "testing", "querystring_expire": 120,
        }},
    }
    yield name, client
