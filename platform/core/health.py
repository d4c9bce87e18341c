"""Liveness and readiness probes for load balancers and orchestrators."""
from __future__ import annotations

import time

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


@never_cache
@require_GET
def healthz(request):
    """The process is alive and serving; touches nothing else."""
    return JsonResponse({"status": "ok"})


def check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means not ready
        return f"{type(exc).__name__}: {exc}"
    return None


def check_broker() -> str | None:
    from celery import current_app  # the project's app (config.celery_app); apps never import config

    try:
        with current_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@never_cache
@require_GET
def readyz(request):
    """Ready to take traffic: the database and the broker answer."""
    checks = {}
    for name, check in (("database", check_database), ("broker", check_broker)):
        started = time.monotonic()
        error = check()
        checks[name] = {
            "ok": error is None,
            "ms": round((time.monotonic() - started) * 1000, 1),
            **({"error": error} if error else {}),
        }
    ready = all(c["ok"] for c in checks.values())
    body = {"status": "ready" if ready else "unavailable", "checks": checks}
    if not ready and not settings.DEBUG:
        # Do not leak connection strings to the internet; names are enough.
        for c in checks.values():
            c.pop("error", None)
    return JsonResponse(body, status=200 if ready else 503)
