"""Maintenance (reaper, sweeper, billing rollup and sweeps) runs on its own
queue and worker, so a fleet whose job workers are all busy still reaps; job
queues carry job runs only."""
from __future__ import annotations

import os
import shlex
import subprocess
import uuid
from datetime import timedelta

import pytest
import yaml
from django.conf import settings as django_settings
from django.utils import timezone

from config.celery_app import app
from jobs.models import Job, JobState
from tests.celery_worker import REPO_ROOT, database_url_for_current_connection, stop_process_group

from .worker_helpers import submit

MAINTENANCE_TASKS = ["jobs.tasks.reap_expired_leases", "jobs.tasks.sweep_lost_doorbells", "billing.tasks.rollup_and_export",
                     "billing.tasks.sweep_stripe_events", "billing.tasks.reconcile_closed_periods",
                     "billing.tasks.process_stripe_event"]


def routed_queue(task_name: str) -> str:
    return app.amqp.router.route({}, task_name)["queue"].name


def consumed_queues(command: str) -> set[str]:
    words = shlex.split(command)
    queues = set()
    for i, word in enumerate(words):
        if word.startswith("--queues="):
            queues |= set(word.split("=", 1)[1].split(","))
        elif word in ("-Q", "--queues"):
            queues |= set(words[i + 1].split(","))
    return queues


def procfile() -> dict[str, str]:
    lines = (REPO_ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines if line.strip() and not line.startswith("#"))


def test_maintenance_tasks_route_to_their_own_queue_and_jobs_to_theirs():
    app.loader.import_default_modules()
    for name in MAINTENANCE_TASKS + [entry["task"] for entry in django_settings.CELERY_BEAT_SCHEDULE.values()]:
        assert routed_queue(name) == django_settings.LATHE_MAINTENANCE_QUEUE == "maintenance", name
    assert routed_queue("jobs.tasks.run_job") == django_settings.LATHE_DEFAULT_QUEUE  # dispatch names the job's queue anyway


def test_make_up_and_compose_run_a_maintenance_worker_apart_from_the_job_workers():
    processes = procfile()
    assert consumed_queues(processes["maintenance"]) == {"maintenance"} and "worker" in processes["maintenance"]
    assert "maintenance" not in consumed_queues(processes["worker"]) and consumed_queues(processes["worker"])
    services = yaml.safe_load((REPO_ROOT / "docker" / "compose.yaml").read_text())["services"]
    assert consumed_queues(services["maintenance"]["command"]) == {"maintenance"}
    assert "maintenance" not in consumed_queues(services["worker"]["command"]) and consumed_queues(services["worker"]["command"])


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_procfiles_maintenance_worker_reaps_with_no_job_worker_running(tmp_path, tenant_a, api_for, dataset, tiny_bert,
                                                                          settings):
    """The reaper sent as the scheduler sends it (routing only, no queue named)
    runs on the Procfile's maintenance worker; no job worker is up at all."""
    settings.LATHE_DEFAULT_QUEUE = f"nobody-{uuid.uuid4().hex[:8]}"  # the re-queued job's doorbell goes nowhere
    job_id = submit(api_for(tenant_a.key(scopes=["write"])), dataset)
    Job.objects.filter(pk=job_id).update(state=JobState.RUNNING, attempts=1, lease_token=uuid.uuid4(),
                                         lease_expires_at=timezone.now() - timedelta(seconds=5),
                                         heartbeat_at=timezone.now() - timedelta(minutes=1))
    command = procfile()["maintenance"].strip().replace(".venv/bin/celery", f"{REPO_ROOT}/.venv/bin/celery")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test",
           "DATABASE_URL": database_url_for_current_connection()}
    log = tmp_path / "maintenance.log"
    with open(log, "w") as out:
        process = subprocess.Popen(["bash", "-c", f"exec env {command}"], cwd=REPO_ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        from jobs.tasks import reap_expired_leases

        try:
            outcome = reap_expired_leases.delay().get(timeout=120)
        except Exception:
            pytest.fail(f"the maintenance worker did not run the reaper; its log:\n{log.read_text()[-4000:]}")
    finally:
        stop_process_group(process)
    assert outcome["requeued"] == [job_id]
    assert Job.objects.get(pk=job_id).state == JobState.QUEUED
