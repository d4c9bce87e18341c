"""The fleet load run of issue 17 (a benchmark, not part of `make test`: the file name keeps pytest's
collection away from it; bench/fleet_load.py runs it). N jobs of the tiny model queued at once across W real
Celery worker processes, on whatever broker and database the settings chose (Redis + PostgreSQL in CI's
shape with REDIS_URL/DATABASE_URL set): every job runs exactly once — one attempt, one start, one model,
usage from that attempt only — and then, with every worker idle, submit → running latency for jobs
submitted one at a time (the doorbell's path: commit, broker, worker, claim).

    FLEET_JOBS=200 FLEET_WORKERS=3 .venv/bin/python -m pytest tests/jobs/fleet_load_scenario.py -q -s
"""
from __future__ import annotations

import json
import os
import statistics
import time
from contextlib import ExitStack

import pytest

from billing.models import UsageSegment
from jobs import lifecycle
from jobs.models import Job, JobArtifact, JobEvent, JobState
from tests.celery_worker import celery_worker

from .worker_helpers import job_state, wait_for, worker_env

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_fleet_load(tmp_path, fast_jobs, make_tenant, api_for, tiny_bert, media):
    from corpora.services import dataset_upload
    from django.core.files.uploadedfile import SimpleUploadedFile
    from tenancy.actors import Actor

    from .conftest import slice_csv

    jobs_wanted, workers = int(os.environ.get("FLEET_JOBS", "200")), int(os.environ.get("FLEET_WORKERS", "3"))
    fast_jobs.LATHE_REDISPATCH_AFTER_SECONDS = 30  # refused claims (an organization at its limit) are rung again
    # Free plans run 2 jobs at a time each: enough organizations that the workers, not the limits, are the bottleneck.
    tenants = [make_tenant(f"Fleet {i}", f"fleet-{i}@example.com") for i in range(max(2, workers))]
    clients, datasets = [], []
    for tenant in tenants:
        clients.append(api_for(tenant.key(scopes=["write"])))
        datasets.append(dataset_upload(organization=tenant.organization, actor=Actor.for_membership(tenant.owner_membership),
                                       uploaded=SimpleUploadedFile("slice.csv", slice_csv()), validation_fraction=0.2).dataset)
    body = {"base_model": "tiny-bert", "hyperparameters": {"epochs": 1, "batch_size": 16, "max_length": 32, "refit": False,
                                                          "early_stopping_patience": 0}}
    env = worker_env(fast_jobs, tmp_path)
    with ExitStack() as stack:
        queue, _ = stack.enter_context(celery_worker(tmp_path / "w0.log", extra_env=env))
        for i in range(1, workers):
            stack.enter_context(celery_worker(tmp_path / f"w{i}.log", queue=queue, extra_env=env))
        fast_jobs.LATHE_DEFAULT_QUEUE = queue

        started = time.monotonic()
        ids = []
        for i in range(jobs_wanted):
            response = clients[i % len(clients)].post("/api/v1/jobs", {**body, "dataset_id": datasets[i % len(datasets)].pk},
                                                      format="json")
            assert response.status_code == 201, response.content
            ids.append(response.json()["id"])
        submitted = time.monotonic() - started

        def all_done():
            lifecycle.sweep_lost_doorbells()  # what the scheduler does every minute
            return Job.objects.filter(pk__in=ids, state__in=(JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)).count() == len(ids)

        wait_for(all_done, timeout=60 * 60, interval=2, message=f"{len(ids)} jobs to finish")
        burst_seconds = time.monotonic() - started

        jobs = list(Job.objects.filter(pk__in=ids))
        assert {j.state for j in jobs} == {JobState.SUCCEEDED}, [(j.pk, j.state, j.failure_reason) for j in jobs if j.state != "succeeded"]
        assert {j.attempts for j in jobs} == {1}  # none run twice
        starts = JobEvent.objects.filter(job_id__in=ids, message__startswith="Attempt ").values_list("job_id", flat=True)
        assert sorted(starts) == sorted(ids)  # one start each
        assert JobArtifact.objects.filter(job_id__in=ids, name="model.zip").count() == len(ids)
        assert not UsageSegment.objects.filter(job_id__in=ids).exclude(attempt=1).exists()
        per_worker = {}
        for job in jobs:
            per_worker[job.worker] = per_worker.get(job.worker, 0) + 1

        # Idle workers: one job at a time, submit → running.
        latencies = []
        for i in range(20):
            response = clients[0].post("/api/v1/jobs", {**body, "dataset_id": datasets[0].pk}, format="json")
            job_id = response.json()["id"]
            job = wait_for(lambda: (j := job_state(job_id)).started_at and j, timeout=120, interval=0.01,
                           message="the job to start")
            latencies.append((job.started_at - job.created_at).total_seconds() * 1000)
            wait_for(lambda: job_state(job_id).is_terminal, timeout=300, interval=0.2, message="the job to finish")
    latencies.sort()
    report = {"jobs": len(ids), "workers": workers, "broker": "redis" if os.environ.get("REDIS_URL") else "filesystem",
              "database": os.environ.get("DATABASE_URL", "sqlite").split(":")[0], "submit_seconds": round(submitted, 1),
              "burst_seconds": round(burst_seconds, 1), "jobs_per_worker": sorted(per_worker.values()),
              "idle_submit_to_running_ms": {"p50": round(statistics.median(latencies), 1),
                                            "p95": round(latencies[int(0.95 * (len(latencies) - 1))], 1),
                                            "max": round(latencies[-1], 1), "samples": len(latencies)}}
    print("\nfleet load:", json.dumps(report))
    out = os.environ.get("FLEET_OUT")
    if out:
        with open(out, "w") as fh:
            json.dump(report, fh, indent=1)
