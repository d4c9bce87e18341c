from __future__ import annotations

import time

from django.db import connection

from jobs.models import Job


def wait_for(predicate, timeout: float = 120, interval: float = 0.2, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def job_state(job_id: int) -> Job:
    connection.close()  # see other processes' commits at once (PostgreSQL snapshots, SQLite WAL)
    return Job.objects.get(pk=job_id)


def worker_env(settings, tmp_path, **extra) -> dict:
    return {
        "LATHE_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "LATHE_CHECKPOINT_ROOT": str(settings.LATHE_CHECKPOINT_ROOT),
        "LATHE_JOB_HEARTBEAT_SECONDS": str(settings.LATHE_JOB_HEARTBEAT_SECONDS),
        "LATHE_JOB_LEASE_SECONDS": str(settings.LATHE_JOB_LEASE_SECONDS),
        "LATHE_CHECKPOINT_EVERY_STEPS": str(settings.LATHE_CHECKPOINT_EVERY_STEPS),
        "LATHE_WORKER_THREADS": "1",
        **extra,
    }


def submit(client, dataset, **hyper) -> int:
    """Submit through the API with training settings fit for the tiny model."""
    hyper = {"batch_size": 8, "learning_rate": 3e-3, **hyper}
    response = client.post("/api/v1/jobs", {"dataset_id": dataset.pk, "base_model": "tiny-bert", "hyperparameters": hyper},
                           format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def kill_after_first_checkpoint(job_id: int, worker) -> tuple:
    """Wait for the job's first step checkpoint past step 10, SIGKILL the worker's process group (the
    worker and its child) mid-job; returns (that checkpoint, when the worker was dead)."""
    import os
    import signal

    from django.utils import timezone

    from jobs.models import JobCheckpoint

    checkpoint = wait_for(lambda: JobCheckpoint.objects.filter(job_id=job_id, is_best=False, step__gte=10).first(),
                          message="a first checkpoint")
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    return checkpoint, timezone.now()
