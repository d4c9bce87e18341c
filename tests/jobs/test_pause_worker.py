"""Pause and resume through a real Celery worker process: a running fine-tune is
paused, stops at its next step with a checkpoint, releases its lease and bills
nothing more while paused; resumed, it continues from that checkpoint (not from
step 0), succeeds, and the pause did not use up one of its attempts."""
from __future__ import annotations

import pytest

from billing.models import UsageSegment
from jobs.models import JobCheckpoint, JobEvent, JobState
from tests.celery_worker import celery_worker

from .worker_helpers import job_state, submit, wait_for, worker_env

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_pause_a_running_job_then_resume_it_from_its_checkpoint(tmp_path, fast_jobs, tenant_a, api_for, long_dataset,
                                                                 tiny_bert):
    client = api_for(tenant_a.key(scopes=["write"]))
    log = tmp_path / "worker.log"
    with celery_worker(log, extra_env=worker_env(fast_jobs, tmp_path)) as (queue, _process):
        fast_jobs.LATHE_DEFAULT_QUEUE = queue
        # ~1,000 steps: a pause asked at step 20 is read within a heartbeat or two, long before the end.
        job_id = submit(client, long_dataset, epochs=20, batch_size=4, early_stopping_patience=0)
        wait_for(lambda: job_state(job_id).step >= 20, timeout=180, message="the job to train a little")
        asked = client.post(f"/api/v1/jobs/{job_id}/pause")
        assert asked.status_code == 200 and asked.json()["pause_requested_at"], asked.content
        paused = wait_for(lambda: job_state(job_id).state == JobState.PAUSED and job_state(job_id), timeout=120,
                          message="the job to pause")
        assert paused.lease_token is None and paused.finished_at is None and paused.attempts == 1
        assert 20 <= paused.step < paused.total_steps
        # The stop saved a checkpoint at the very step it stopped at: the resume point. (job.step is written at most
        # once a second, so it may lag the step the worker stopped at.)
        stop_checkpoint = JobCheckpoint.objects.filter(job_id=job_id, attempt=1, is_best=False).order_by("-id").first()
        stopped_at = f"Stopped at step {stop_checkpoint.step}: paused." if stop_checkpoint else None
        assert JobEvent.objects.filter(job_id=job_id, attempt=1, message=stopped_at).exists(), (
            list(JobEvent.objects.filter(job_id=job_id).values_list("message", flat=True)))
        assert stop_checkpoint.step >= paused.step
        paused_at = JobEvent.objects.get(job_id=job_id, message__startswith="Job paused.").created_at
        first_attempt = UsageSegment.objects.filter(job_id=job_id)
        billed_before = list(first_attempt.values_list("id", flat=True))
        assert billed_before and all(s.ended_at <= paused_at for s in first_attempt)

        resumed = client.post(f"/api/v1/jobs/{job_id}/resume")
        assert resumed.status_code == 200 and resumed.json()["state"] in ("queued", "running"), resumed.content
        # The platform's own event ("Resumed: queued …"): the worker may already have logged its "Resumed from
        # checkpoint …" by now, on a quick machine.
        resumed_at = JobEvent.objects.get(job_id=job_id, message__startswith="Resumed: queued").created_at
        job = wait_for(lambda: job_state(job_id).is_terminal and job_state(job_id), timeout=300,
                       message="the resumed job to finish")
    assert job.state == JobState.SUCCEEDED, (job.failure_reason, log.read_text()[-3000:])
    assert job.attempts == 2 and job.max_attempts == paused.max_attempts  # given back when it paused
    assert job.step == job.total_steps
    events = list(JobEvent.objects.filter(job_id=job_id, attempt=2).values_list("message", flat=True))
    assert f"Resumed from checkpoint at step {stop_checkpoint.step} (epoch" in " ".join(events), events
    # Nothing billed while paused: the second attempt's usage starts after the resume.
    second = UsageSegment.objects.filter(job_id=job_id).exclude(id__in=billed_before)
    assert second.exists() and all(s.attempt == 2 and s.started_at >= resumed_at for s in second)
    assert UsageSegment.objects.filter(job_id=job_id, started_at__lt=resumed_at, ended_at__gt=paused_at).count() == 0
