"""``make run``: the whole product on one machine, from nothing.

Starts the embedded PostgreSQL and Redis (unless ``DATABASE_URL``/``REDIS_URL`` are set), migrates, creates
a demo tenant, a staff superuser and an API key, starts the web server, one worker (all queues) and the
periodic-task scheduler, prints where to go, and stops everything on Ctrl-C.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path


def _seed(var_dir: Path) -> dict[str, str]:
    from accounts import services
    from accounts.models import ApiKey, Tenant

    creds_file = var_dir / "quickstart.json"
    creds = json.loads(creds_file.read_text()) if creds_file.exists() else {}
    creds.setdefault("admin_password", secrets.token_urlsafe(12))
    services.get_or_create_user("admin", email="admin@example.com", password=creds["admin_password"], staff=True)
    owner = services.get_or_create_user("demo", email="demo@example.com", password=creds["admin_password"])
    tenant = Tenant.objects.filter(slug="demo").first() or services.create_tenant("Demo", owner=owner, slug="demo")

    key = creds.get("api_key", "")
    prefix = services.parse_key(key) if key else None
    row = ApiKey.objects.filter(prefix=prefix, tenant=tenant).first() if prefix else None
    if row is None or not services.verify_key(row, key) or row.is_revoked or row.is_expired:
        creds["api_key"] = services.issue_api_key(tenant, "quick start").secret
    creds_file.write_text(json.dumps(creds))
    creds_file.chmod(0o600)
    return creds


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "audioseal_site.settings")
    import django

    django.setup()  # starts the embedded servers and exports their URLs for the child processes
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    creds = _seed(Path(settings.VAR_DIR))
    host = os.environ.get("HOST", "127.0.0.1")
    port = os.environ.get("PORT", "8000")
    env = {**os.environ, "EMBEDDED_SERVICES": "false"}
    manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
    children = [
        subprocess.Popen([*manage, "runserver", "--noreload", f"{host}:{port}"], env=env),
        subprocess.Popen([*manage, "run_worker"], env=env),
        # periodic work (reconciler, retention, Stripe meter sync) is enqueued here, run by the worker
        subprocess.Popen([*manage, "run_scheduler"], env=env),
    ]
    url = f"http://{host}:{port}"
    print(
        f"""
AudioSeal Studio is starting.
  API:        {url}/api/v1/   (docs: {url}/api/docs/)
  Admin:      {url}/admin/   user: admin   password: {creds['admin_password']}
  API key:    {creds['api_key']}
  Database:   {settings.DATABASES['default']['HOST'] or 'from DATABASE_URL'}   Redis: {settings.REDIS_URL}
  Models:     demo checkpoints (see README: what they can and cannot do)

Try:
  curl -H "Authorization: Bearer {creds['api_key']}" -F file=@media_ops/tests/fixtures/speech_16k_mono.wav \\
       -F message=1A2B "{url}/api/v1/watermark/embed?wait=20"

Ctrl-C stops everything.
""",
        flush=True,
    )

    stopping = False

    def stop(*_args) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping and all(child.poll() is None for child in children):
        time.sleep(0.5)
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(20)
        except subprocess.TimeoutExpired:
            child.kill()
    print("stopped.")


if __name__ == "__main__":
    main()
