"""Starts a real Celery worker process for tests (prefork, one child, acks late —
the production shape), on whatever broker the settings chose: the filesystem
transport by default, Redis when REDIS_URL is set (CI)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

from django.db import connection

REPO_ROOT = Path(__file__).resolve().parents[1]


def database_url_for_current_connection() -> str:
    """The URL of the database this test process uses (the *test* database)."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@contextmanager
def celery_worker(log_path: Path, queue: str | None = None, extra_env: dict | None = None):
    """Yields the queue name the worker consumes; the worker is stopped on exit."""
    queue = queue or f"test-{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "platform")]),
        "DATABASE_URL": database_url_for_current_connection(),
        "CELERY_DEFAULT_QUEUE": queue,
        # A frozen (SIGSTOPped) worker's transaction is ended by the server after this.
        "LATHE_DB_IDLE_IN_TRANSACTION_SECONDS": "8",
        **(extra_env or {}),
    }
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel=INFO",
               "--pool=prefork", "--concurrency=1", f"--queues={queue}", f"--hostname=test-{queue}-{uuid.uuid4().hex[:6]}@%h",
               "--without-gossip", "--without-mingle", "--without-heartbeat"]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        yield queue, process
    finally:
        stop_process_group(process)


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM to the process group (a warm shutdown), SIGKILL if it outstays 20 s."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
