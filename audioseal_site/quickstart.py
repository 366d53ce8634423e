"""``make run``: the whole product on one machine, from nothing.

Starts the embedded PostgreSQL and Redis (unless ``DATABASE_URL``/``REDIS_URL`` are set), migrates, creates
a demo tenant, a staff superuser and an API key, and then supervises (``audioseal_site.supervisor``) the
production web server (gunicorn with ``deploy/gunicorn.conf.py``: uvicorn workers on the ASGI application, the
development settings otherwise), one worker (all queues) and the periodic-task scheduler: a child that dies is
restarted with a backoff and the databases stay up. Ctrl-C stops everything.

``WEB_CONCURRENCY`` (web processes) defaults to 2 here: uvicorn workers need no more for concurrency on a
development machine.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

from audioseal_site.supervisor import Program, Supervisor


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
    close_database_connections()  # the children have their own; this process holds none (and no pool thread)
    supervisor = Supervisor(programs(Path(settings.BASE_DIR), host, port))
    supervisor.start()
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

A crashed process is restarted (the supervisor says so here). Ctrl-C stops everything.
""",
        flush=True,
    )

    supervisor.run()
    print("stopped.", flush=True)


def public_base_url(host: str, port: str) -> str:
    """Where the quick start is reachable from this machine: links in webhook payloads point here."""
    reachable = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    return f"http://{f'[{reachable}]' if ':' in reachable else reachable}:{port}"


def programs(base_dir: Path, host: str, port: str) -> list[Program]:
    env = {**os.environ, "EMBEDDED_SERVICES": "false", "PORT": port, "GUNICORN_BIND_HOST": host}
    env.setdefault("PUBLIC_BASE_URL", public_base_url(host, port))  # the served port, not 8000 (issue 19.5)
    env.setdefault("WEB_CONCURRENCY", "2")
    manage = [sys.executable, str(base_dir / "manage.py")]
    return [
        Program("web", [sys.executable, "-m", "gunicorn", "-c", str(base_dir / "deploy" / "gunicorn.conf.py"),
                        "audioseal_site.asgi:application"], env, cwd=base_dir),
        Program("worker", [*manage, "run_worker"], env, cwd=base_dir),
        # periodic work (reconciler, retention, Stripe meter sync) is enqueued here, run by the worker
        Program("scheduler", [*manage, "run_scheduler"], env, cwd=base_dir),
    ]


def close_database_connections() -> None:
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        conn.close()
        if getattr(conn, "pool", None) is not None:
            conn.close_pool()


if __name__ == "__main__":
    main()
