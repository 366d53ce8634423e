"""The deployment files are consistent with the code (Docker cannot run here, so validate what can be):
every YAML parses; every command they run exists (manage.py commands, gunicorn config, the WSGI module);
every environment variable they set is one the settings read; each queue has a worker and exactly the model
queues get GPUs; probes hit real URLs; alert rules use only metrics that /metrics exports."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.core.management import get_commands
from django.urls import resolve

from audioseal_site import health
from jobs.kinds import KINDS

ROOT = Path(settings.BASE_DIR)
DEPLOY = ROOT / "deploy"
IMAGES = {"audioseal-studio": "deploy/Dockerfile", "audioseal-studio-cuda": "deploy/Dockerfile.cuda"}
# Read by the images, gunicorn, Python or third-party code rather than by settings.py.
EXTERNAL_ENV = {
    "DJANGO_SETTINGS_MODULE", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PATH", "HF_HOME",
    "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "NO_TORCH_COMPILE", "PROMETHEUS_MULTIPROC_DIR",
}


def load_all(path: Path) -> list:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def known_env() -> set[str]:
    names = set(EXTERNAL_ENV)
    for path in (ROOT / "audioseal_site/settings.py", DEPLOY / "gunicorn.conf.py"):
        names |= set(re.findall(r"""env(?:\.\w+)?\(\s*["']([A-Z0-9_]+)["']""", path.read_text()))
        names |= set(re.findall(r"""environ(?:\.get)?[\[(]\s*["']([A-Z0-9_]+)["']""", path.read_text()))
    settings_text = (ROOT / "audioseal_site/settings.py").read_text()
    names |= set(re.findall(r"""_per_kind\(\s*["']([A-Z0-9_]+)["']""", settings_text))
    return names


def check_command(argv: list[str]) -> None:
    """A command a container runs must exist in this repository."""
    assert argv, "empty command"
    if "manage.py" in argv:
        name = argv[argv.index("manage.py") + 1]
        assert name in get_commands(), f"manage.py {name} does not exist"
        assert argv[0] == "python"
    elif argv[0] == "gunicorn":
        assert argv[1] == "-c" and (ROOT / argv[2]).is_file(), argv
        # The config's uvicorn workers serve an ASGI application: `module:application`, not the WSGI module.
        module, _, attribute = argv[3].partition(":")
        assert (module, attribute) == ("audioseal_site.asgi", "application"), argv
    else:
        raise AssertionError(f"unexpected command {argv}")


def test_gunicorn_config_runs_uvicorn_workers_on_the_asgi_application():
    """The production web server: gunicorn's config names an importable uvicorn worker class, whose
    application is Django's ASGI handler with every middleware able to run without pinning a thread."""
    import os
    import runpy
    from unittest import mock

    from django.utils.module_loading import import_string
    from uvicorn_worker import UvicornWorker

    with mock.patch.dict(os.environ):  # the config exports PROMETHEUS_MULTIPROC_DIR: not into this process
        config = runpy.run_path(str(DEPLOY / "gunicorn.conf.py"))
    worker_class = import_string(config["worker_class"])
    assert issubclass(worker_class, UvicornWorker)
    assert worker_class.CONFIG_KWARGS["proxy_headers"] is False  # REMOTE_ADDR stays the peer, as under gthread
    assert config["timeout"] > settings.MAX_WAIT_SECONDS
    from audioseal_site.asgi import ASGIHandler, application

    assert isinstance(application, ASGIHandler)
    requirements = (ROOT / "requirements.txt").read_text()
    for package in ("uvicorn==", "uvicorn-worker==", "psycopg-pool=="):
        assert package in requirements, package


def test_every_yaml_file_parses():
    files = sorted(DEPLOY.rglob("*.yml")) + sorted(DEPLOY.rglob("*.yaml"))
    assert len(files) >= 10
    for path in files:
        assert load_all(path), path


@pytest.mark.parametrize("dockerfile", sorted(IMAGES.values()))
def test_dockerfiles(dockerfile):
    text = (ROOT / dockerfile).read_text()
    logical = re.sub(r"\\\n", " ", text)
    for line in logical.splitlines():
        if line.startswith("COPY") and "--from=" not in line:
            sources = [p for p in shlex.split(line)[1:-1] if not p.startswith("--")]
            assert all((ROOT / s).exists() for s in sources), line
        if line.startswith("CMD"):
            check_command(json.loads(line[3:].strip()))
    assert "python:3.11" in text  # the Python the project supports
    assert (ROOT / f"{dockerfile}.dockerignore").is_file()  # keeps .venv, var and .git out of the context
    image = [name for name, path in IMAGES.items() if path == dockerfile][0]
    assert f"-f {dockerfile} -t {image}:" in text  # the build command documented in the file
    pinned = re.search(r"^torch==([\d.]+)$", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    assert f"ARG TORCH_VERSION={pinned}" in text


def test_compose_runs_every_queue_with_the_dependencies():
    compose = load_all(DEPLOY / "docker-compose.yml")[0]
    services = compose["services"]
    assert {"web", "postgres", "redis", "minio", "migrate"} <= set(services)
    workers = {name: svc for name, svc in services.items() if name.startswith("worker-")}
    assert {svc["command"][-1] for svc in workers.values()} == set(settings.RQ_QUEUES)
    assert services["scheduler"]["command"][-1] == "run_scheduler"  # enqueues PERIODIC_TASKS
    for name, svc in services.items():
        if "command" in svc and svc.get("image", "").startswith("audioseal-studio"):
            check_command(svc["command"])
            assert svc["build"]["dockerfile"] in IMAGES.values()
            assert (DEPLOY / svc["build"]["context"]).resolve() == ROOT
            unknown = set(svc["environment"]) - known_env()
            assert not unknown, f"{name} sets variables nothing reads: {unknown}"
            assert svc["environment"]["DJANGO_ENV"] == "production"
    web_env = services["web"]["environment"]
    assert web_env["STORAGE_ENDPOINT_URL"] == "http://minio:9000"  # the S3-compatible store
    assert set(services["web"]["depends_on"]) >= {"postgres", "redis", "migrate", "minio-init"}

    gpu = load_all(DEPLOY / "docker-compose.gpu.yml")[0]["services"]
    model_queues = {s.queue for s in KINDS.values() if s.model_family}
    assert {name.removeprefix("worker-") for name in gpu} == model_queues
    assert all(svc["image"].startswith("audioseal-studio-cuda") for svc in gpu.values())


def k8s_docs() -> list[dict]:
    kustomization = load_all(DEPLOY / "k8s/kustomization.yaml")[0]
    docs = []
    for resource in kustomization["resources"]:
        docs += load_all(DEPLOY / "k8s" / resource)
    assert {i["name"] for i in kustomization["images"]} == set(IMAGES)
    return docs


def containers(doc: dict) -> list[dict]:
    return doc["spec"]["template"]["spec"]["containers"]


def test_kubernetes_web_with_probes_and_hpa():
    docs = k8s_docs()
    by_kind: dict[str, list[dict]] = {}
    for doc in docs:
        assert doc["apiVersion"] and doc["metadata"]["name"]
        by_kind.setdefault(doc["kind"], []).append(doc)
    (web,) = [d for d in by_kind["Deployment"] if d["metadata"]["name"] == "audioseal-web"]
    (container,) = containers(web)
    check_command(container["command"])
    assert container["image"] == "audioseal-studio"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        path = container[probe]["httpGet"]["path"]
        url, _, query = path.partition("?")
        assert resolve(url).func in (health.healthz, health.readyz), path
        for check in dict(p.split("=") for p in query.split("&") if p).get("checks", "").split(","):
            assert not check or check in health.CHECKS
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    (hpa,) = by_kind["HorizontalPodAutoscaler"]
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "audioseal-web"}
    assert hpa["spec"]["scaleTargetRef"] == target
    (service,) = by_kind["Service"]
    assert service["spec"]["selector"] == web["spec"]["template"]["metadata"]["labels"]
    (job,) = by_kind["Job"]
    check_command(containers({"spec": job["spec"]})[0]["command"])


def test_kubernetes_worker_per_queue_with_gpus_for_model_queues():
    docs = k8s_docs()
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    secret = next(d for d in docs if d["kind"] == "Secret")
    model_queues = {s.queue for s in KINDS.values() if s.model_family}
    workers = {}
    (scheduler,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("scheduler")]
    assert containers(scheduler)[0]["command"][-1] == "run_scheduler" and scheduler["spec"]["replicas"] == 1
    for doc in docs:
        if doc["kind"] == "Deployment" and doc["metadata"]["name"].startswith("audioseal-worker-"):
            (container,) = containers(doc)
            check_command(container["command"])
            workers[container["command"][-1]] = (doc, container)
    assert set(workers) == set(settings.RQ_QUEUES)
    for queue, (doc, container) in workers.items():
        gpu = container["resources"]["limits"].get("nvidia.com/gpu")
        if queue in model_queues:
            assert gpu == 1 and container["resources"]["requests"]["nvidia.com/gpu"] == 1, queue
            assert container["image"] == "audioseal-studio-cuda"
        else:
            assert gpu is None and container["image"] == "audioseal-studio", queue
        refs = {next(iter(r.values()))["name"] for r in container["envFrom"]}
        assert refs == {config["metadata"]["name"], secret["metadata"]["name"]}
        grace = doc["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > settings.WORKER_SHUTDOWN_GRACE_SECONDS  # the job is requeued before SIGKILL
        for item in container.get("env", []):
            assert item["name"] in known_env(), item


def test_kubernetes_settings_are_real_settings():
    docs = k8s_docs()
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    secret = next(d for d in docs if d["kind"] == "Secret")
    names = set(config["data"]) | set(secret["stringData"])
    assert not names - known_env(), names - known_env()
    assert config["data"]["DJANGO_ENV"] == "production"


def exported_sample_names(text: str) -> set[str]:
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        base = name.removesuffix("_total")
        names |= {
            "counter": {f"{base}_total", f"{base}_created"},
            "histogram": {f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"},
        }.get(kind, {name})
    return names


@pytest.mark.django_db
def test_alert_rules_use_exported_metrics(client, settings, redis_clean):
    settings.METRICS_TOKEN = "t"
    settings.STRIPE_API_KEY = "sk_test_configured"  # the Stripe lag is exported when Stripe is configured
    text = client.get("/metrics", HTTP_AUTHORIZATION="Bearer t").content.decode()
    exported = exported_sample_names(text)
    rules = load_all(DEPLOY / "prometheus-rules.yml")[0]
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    names = {a["alert"] for a in alerts}
    assert {"AudioSealHighLatency", "AudioSealHighErrorRate", "AudioSealQueueBacklog",
            "AudioSealWorkerDown"} <= names
    for alert in alerts:
        assert alert["labels"]["severity"] in ("warning", "critical") and alert["annotations"]["summary"]
        used = set(re.findall(r"\baudioseal_[a-z_]+", alert["expr"]))
        assert used <= exported, (alert["alert"], used - exported)
        assert used or alert["expr"].startswith("up{job=")  # scrape health is Prometheus' own metric
    scrape = load_all(DEPLOY / "prometheus.yml")[0]
    (job,) = scrape["scrape_configs"]
    assert job["metrics_path"] == "/metrics" and job["authorization"]["type"] == "Bearer"
    assert resolve("/metrics").func.__name__ == "metrics_view"
    compose = load_all(DEPLOY / "docker-compose.yml")[0]["services"]["prometheus"]
    assert any(v.endswith("/etc/prometheus/rules/audioseal.yml:ro") for v in compose["volumes"])
    assert scrape["rule_files"] == ["/etc/prometheus/rules/*.yml"]
