"""Fault tests with real worker processes: a worker killed mid-job, a worker
frozen past its lease, and doorbells lost with the broker's messages."""
from __future__ import annotations

import os
import signal
import time

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from billing.models import UsageSegment
from jobs import lifecycle
from jobs.models import Job, JobCheckpoint, JobEvent, JobState
from tests.celery_worker import celery_worker

from .worker_helpers import job_state, kill_after_first_checkpoint, submit, wait_for, worker_env

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]






def freeze_outside_a_write(pid: int, *, attempts: int = 500) -> None:
    """SIGSTOP the worker's process group at a moment it holds no write lock. On PostgreSQL any moment
    will do (a transaction the frozen worker leaves open is ended by the server after its idle limit);
    SQLite has no such limit, so a worker frozen inside one of its short write transactions would lock
    the database for everyone (the embedded default's nature): there, thaw and freeze again until a
    write can start."""
    import sqlite3

    database = django_settings.DATABASES["default"]
    for _ in range(attempts):
        os.killpg(pid, signal.SIGSTOP)
        if database["ENGINE"] != "django.db.backends.sqlite3":
            return
        probe = sqlite3.connect(database["NAME"], timeout=0.2)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.rollback()
            return
        except sqlite3.OperationalError:
            os.killpg(pid, signal.SIGCONT)
            time.sleep(0.05)
        finally:
            probe.close()
    raise AssertionError(f"the worker held the database's write lock at each of {attempts} tries")


def reap_when_expired(job_id: int) -> None:
    job = wait_for(lambda: (j := job_state(job_id)).lease_expires_at and j.lease_expires_at < timezone.now() and j,
                   timeout=30, message="the lease to expire")
    assert job.state == JobState.RUNNING
    assert lifecycle.reap_expired_leases()["requeued"] == [job_id]


def test_killed_worker_is_replaced_and_the_job_resumes_from_its_checkpoint(tmp_path, fast_jobs, tenant_a, api_for,
                                                                           long_dataset, tiny_bert):
    client = api_for(tenant_a.key(scopes=["write"]))
    env = worker_env(fast_jobs, tmp_path)
    with celery_worker(tmp_path / "a.log", extra_env=env) as (queue, first):
        fast_jobs.LATHE_DEFAULT_QUEUE = queue
        job_id = submit(client, long_dataset, epochs=8, batch_size=4, early_stopping_patience=0)
        checkpoint, killed_at = kill_after_first_checkpoint(job_id, first)
    reap_when_expired(job_id)
    with celery_worker(tmp_path / "b.log", queue=queue, extra_env=env):
        job = wait_for(lambda: (j := job_state(job_id)).is_terminal and j, timeout=240, message="the resumed job to finish")
    assert job.state == JobState.SUCCEEDED and job.attempts == 2, job.failure_reason
    resumed = JobEvent.objects.filter(job_id=job_id, attempt=2, message__startswith="Resumed from checkpoint at step").first()
    assert resumed is not None
    assert int(resumed.message.split("step ")[1].split(" ")[0]) >= checkpoint.step
    # The dead attempt billed only what ran: nothing after the kill.
    first_attempt = UsageSegment.objects.filter(job_id=job_id, attempt=1)
    assert first_attempt.exists() and all(s.ended_at <= killed_at for s in first_attempt)
    assert UsageSegment.objects.filter(job_id=job_id, attempt=2).exists()
    # What attempt 2 redid (attempt 1's work after its last checkpoint) is not billed twice.
    from billing.ledger import rollup_usage

    last_checkpoint = JobCheckpoint.objects.filter(job_id=job_id, attempt=1).order_by("-created_at").first().created_at
    redone = first_attempt.filter(ended_at__gt=last_checkpoint)
    assert all(hasattr(s, "exclusion") for s in redone)  # (often none: checkpoints come every 10 steps here)
    assert not first_attempt.filter(ended_at__lte=last_checkpoint, exclusion__isnull=False).exists()
    entries = rollup_usage()
    expected = {(1, True), (2, True)} | ({(1, False)} if redone.exists() else set())
    assert {(e.attempt, e.billable) for e in entries} == expected
    assert sum(e.seconds for e in entries if e.billable) == sum(
        s.seconds for s in UsageSegment.objects.filter(job_id=job_id) if not hasattr(s, "exclusion"))


def test_frozen_worker_is_fenced_and_bills_nothing_after_it_wakes(tmp_path, fast_jobs, tenant_a, api_for,
                                                                  long_dataset, tiny_bert):
    client = api_for(tenant_a.key(scopes=["write"]))
    env = worker_env(fast_jobs, tmp_path)
    with celery_worker(tmp_path / "a.log", extra_env=env) as (queue, frozen):
        fast_jobs.LATHE_DEFAULT_QUEUE = queue
        job_id = submit(client, long_dataset, epochs=6, batch_size=4, early_stopping_patience=0)
        wait_for(lambda: job_state(job_id).step >= 15, message="the job to train a little")
        first_token = job_state(job_id).lease_token
        freeze_outside_a_write(frozen.pid)
        try:
            frozen_at = timezone.now()
            reap_when_expired(job_id)
            with celery_worker(tmp_path / "b.log", queue=queue, extra_env=env):
                wait_for(lambda: job_state(job_id).attempts == 2 and job_state(job_id).state == JobState.RUNNING,
                         message="a second worker to take over")
                os.killpg(frozen.pid, signal.SIGCONT)  # the zombie wakes up mid-run
                time.sleep(3 * float(env["LATHE_JOB_HEARTBEAT_SECONDS"]) + 1)
                job = wait_for(lambda: (j := job_state(job_id)).is_terminal and j, timeout=240, message="the job to finish")
        finally:
            os.killpg(frozen.pid, signal.SIGCONT)
    assert job.state == JobState.SUCCEEDED and job.attempts == 2, job.failure_reason
    zombie = UsageSegment.objects.filter(job_id=job_id, lease_token=first_token)
    assert zombie.exists(), "the first attempt billed what it ran before freezing"
    assert all(s.ended_at <= frozen_at + timezone.timedelta(seconds=float(env["LATHE_JOB_HEARTBEAT_SECONDS"]) + 0.5)
               for s in zombie), "nothing billed for the time frozen or after waking"
    assert "lease lost" in (tmp_path / "a.log").read_text()


def test_lost_doorbells_are_rung_again(tmp_path, fast_jobs, tenant_a, api_for, dataset, tiny_bert, settings):
    """Messages lost with the broker (a Redis restart in CI; the filesystem
    queue emptied in the embedded default): the sweeper re-rings, all jobs run."""
    client = api_for(tenant_a.key(scopes=["write"]))
    queue = f"lost-{os.getpid()}-{int(time.time())}"
    fast_jobs.LATHE_DEFAULT_QUEUE = queue
    job_ids = [submit(client, dataset, epochs=1) for _ in range(3)]
    lose_queued_messages(queue)
    settings.LATHE_REDISPATCH_AFTER_SECONDS = 0
    Job.objects.filter(pk__in=job_ids).update(last_dispatched_at=timezone.now() - timezone.timedelta(hours=1))
    with celery_worker(tmp_path / "w.log", queue=queue, extra_env=worker_env(fast_jobs, tmp_path)):
        time.sleep(2)
        assert all(job_state(j).state == JobState.QUEUED for j in job_ids), "the messages should be gone"
        assert sorted(lifecycle.sweep_lost_doorbells()) == sorted(job_ids)
        for job_id in job_ids:
            job = wait_for(lambda: (j := job_state(job_id)).is_terminal and j, timeout=180, message=f"job {job_id}")
            assert job.state == JobState.SUCCEEDED and job.attempts == 1


def lose_queued_messages(queue: str) -> None:
    if django_settings.REDIS_URL and os.environ.get("PYTEST_XDIST_WORKER"):
        # Beside other test processes (pytest -n): this process's own Redis database is emptied, as a
        # restart would empty it; restarting the server would cut the other processes' tests too.
        import redis

        client = redis.Redis.from_url(django_settings.REDIS_URL)
        assert sum(client.llen(key) for key in client.scan_iter(match=f"{queue}*") if client.type(key) == b"list") >= 3
        client.flushdb()
    elif django_settings.REDIS_URL:
        restart_redis()
    else:
        from config.celery_app import app

        with app.connection_for_write() as connection:
            assert connection.default_channel.queue_purge(queue) >= 3


def restart_redis() -> None:
    """Restart the loopback Redis (it keeps nothing on disk): every queued message is lost."""
    import shutil
    import subprocess

    import redis

    url = django_settings.REDIS_URL
    client = redis.Redis.from_url(url)
    try:
        client.shutdown(nosave=True)
    except redis.exceptions.ConnectionError:
        pass  # shutdown closes the connection
    server = shutil.which("redis-server")
    subprocess.run([server, "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379", "--save", "",
                    "--appendonly", "no", "--dir", "/tmp"], check=True)
    wait_for(lambda: _ping(client), timeout=20, message="Redis to come back")


def _ping(client) -> bool:
    try:
        return client.ping()
    except Exception:
        return False
