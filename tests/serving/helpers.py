"""A real inference worker process for the serving tests (a thread pool consuming its own inference queue,
sharing one LRU of loaded models, as Procfile `inference` runs it), and models stored as a job's archive."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection

from jobs.models import Job, JobArtifact, JobKind, JobState
from tests.celery_worker import REPO_ROOT, database_url_for_current_connection, stop_process_group
from tests.jobs.worker_helpers import wait_for


@contextmanager
def inference_worker(settings, tmp_path: Path, *, max_models: int = 4, concurrency: int = 2, extra_env: dict | None = None):
    """Starts `celery worker --pool=threads` on a fresh inference queue (the test process's settings point at it)
    and waits until its heartbeat row says it is up. Yields the process; stopped (SIGTERM, warm) on exit."""
    from serving.services import workers_up

    queue = f"inference-test-{uuid.uuid4().hex[:10]}"
    settings.LATHE_INFERENCE_QUEUE = queue
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "platform")]),
        "DATABASE_URL": database_url_for_current_connection(),
        "CELERY_DEFAULT_QUEUE": queue,
        "LATHE_INFERENCE_QUEUE": queue,
        "LATHE_INFERENCE_MAX_MODELS": str(max_models),
        "LATHE_INFERENCE_HEARTBEAT_S": "1",
        "LATHE_INFERENCE_THREADS": "1",
        "LATHE_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "LATHE_SERVING_CACHE_DIR": str(tmp_path / "serving-cache"),
        **(extra_env or {}),
    }
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel=INFO", "--pool=threads",
               f"--concurrency={concurrency}", f"--queues={queue}", f"--hostname=inference-{queue}@%h",
               "--without-gossip", "--without-mingle", "--without-heartbeat"]
    log_path = tmp_path / f"{queue}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        def up():
            connection.close()
            assert process.poll() is None, log_path.read_text()[-3000:]
            return workers_up(queue=queue).first()

        wait_for(up, timeout=180, interval=0.5, message="the inference worker's first heartbeat")
        process.log_path = log_path
        yield process
    finally:
        stop_process_group(process)


def store_model(job: Job, folder_zip: bytes, name: str = "model.zip") -> JobArtifact:
    storage_name = default_storage.save(f"jobs/{job.organization_id}/{job.pk}/{name}", ContentFile(folder_zip))
    return JobArtifact.objects.create(job=job, organization=job.organization, name=name, kind="model",
                                      storage_name=storage_name, size_bytes=len(folder_zip),
                                      sha256=hashlib.sha256(folder_zip).hexdigest())


def succeeded_job(tenant, version, *, kind=JobKind.FINETUNE, name: str = "", base_model=None, labels=(), source=None) -> Job:
    from django.utils import timezone

    return Job.objects.create(organization=tenant.organization, kind=kind, state=JobState.SUCCEEDED,
                              dataset_version=version, labels=list(labels), name=name, base_model=base_model,
                              source_job=source, finished_at=timezone.now())
