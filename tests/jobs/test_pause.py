"""Pause and resume against the real database, no worker process (test_worker_e2e.py
runs one): the state changes, the worker-side flag and stop, the attempt given back,
the reaper and the sweeper leaving paused jobs alone, cancel of a paused job, and
the native API, dashboard and admin surfaces."""
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from billing.models import UsageSegment
from config.celery_app import app as celery_app
from jobs import kind_runners, lifecycle
from jobs.models import Job, JobEvent, JobState
from jobs.reporter import JobReporter
from workers.finetune import FineTuneResult

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(tenant_a, api_for):
    return api_for(tenant_a.key(scopes=["write"]))


def make_job(api, dataset) -> Job:
    response = api.post("/api/v1/jobs", {"dataset_id": dataset.pk, "base_model": "tiny-bert"}, format="json")
    assert response.status_code == 201, response.content
    return Job.objects.get(pk=response.json()["id"])


def test_pause_a_queued_job_then_resume_it(api, dataset, tiny_bert, django_capture_on_commit_callbacks):
    job = make_job(api, dataset)
    body = api.post(f"/api/v1/jobs/{job.pk}/pause").json()
    assert body["state"] == "paused" and body["pause_requested_at"] and body["finished_at"] is None
    assert lifecycle.job_claim(job_id=job.pk, worker="w", device_class="cpu") is None  # a paused job never starts
    again = api.post(f"/api/v1/jobs/{job.pk}/pause")
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_paused"
    with django_capture_on_commit_callbacks() as callbacks:
        body = api.post(f"/api/v1/jobs/{job.pk}/resume").json()
    assert body["state"] == "queued" and body["pause_requested_at"] is None
    assert len(callbacks) == 1  # the doorbell rings again, after commit
    claimed = lifecycle.job_claim(job_id=job.pk, worker="w", device_class="cpu")
    assert claimed is not None and claimed[0].attempts == 1
    not_paused = api.post(f"/api/v1/jobs/{job.pk}/resume")
    assert not_paused.status_code == 409 and not_paused.json()["error"]["code"] == "job_not_paused"
    messages = list(JobEvent.objects.filter(job=job).values_list("message", flat=True))
    assert "Paused before it started." in messages and any(m.startswith("Resumed") for m in messages)


def test_pause_a_running_job_stops_it_at_the_next_step_and_gives_the_attempt_back(api, dataset, tiny_bert, settings):
    job = make_job(api, dataset)
    Job.objects.filter(pk=job.pk).update(max_attempts=1)
    claimed, token = lifecycle.job_claim(job_id=job.pk, worker="w", device_class="cpu")
    body = api.post(f"/api/v1/jobs/{job.pk}/pause").json()
    assert body["state"] == "running" and body["pause_requested_at"]  # until the worker reaches its next step
    pausing = api.post(f"/api/v1/jobs/{job.pk}/pause")
    assert pausing.status_code == 409 and pausing.json()["error"]["code"] == "job_pausing"
    early = api.post(f"/api/v1/jobs/{job.pk}/resume")
    assert early.status_code == 409 and early.json()["error"]["code"] == "job_not_paused"

    # The worker's side: the heartbeat reads the flag, the training loop's stop check answers "paused".
    reporter = JobReporter(claimed, token, "cpu")
    assert reporter.should_stop() is None
    assert reporter.heartbeat()
    assert reporter.should_stop() == "paused"
    stopped = FineTuneResult(status="stopped", stop_reason="paused", global_step=7, total_steps=40, best_metrics=None,
                             train_seconds=1.0, train_tokens=100)
    state, result, reason = kind_runners.finetune_outcome(claimed, stopped)
    assert state == JobState.PAUSED and result["stop_reason"] == "paused" and "step 7" in reason
    usage = {"started_at": claimed.started_at, "ended_at": timezone.now(), "device_class": "cpu"}  # as reporter.stop()
    assert lifecycle.job_finish(job=claimed, token=token, state=state, result=result, failure_reason=reason, usage=usage)

    job.refresh_from_db()
    assert job.state == JobState.PAUSED and job.lease_token is None and job.finished_at is None
    assert job.failure_reason == "" and not job.is_terminal
    assert job.attempts == 1 and job.max_attempts == 2  # the paused attempt is no failure: one is still left
    # Billing stopped with the attempt: the fenced heartbeat of the released lease records nothing.
    segments = UsageSegment.objects.filter(job=job).count()
    now = timezone.now()
    assert not lifecycle.record_usage(job=claimed, token=token, started_at=now, ended_at=now, device_class="cpu")
    assert UsageSegment.objects.filter(job=job).count() == segments >= 1
    assert JobEvent.objects.filter(job=job, message__startswith="Job paused. Paused at step 7").exists()

    lifecycle.job_resume(organization=job.organization, actor=None, job_id=job.pk)
    second = lifecycle.job_claim(job_id=job.pk, worker="w2", device_class="cpu")
    assert second is not None and second[0].attempts == 2
    assert JobReporter(second[0], second[1], "cpu").should_stop() is None  # the resumed attempt runs on
    # Lost now, it is re-queued no more (2 of 2 used) — the pause did not use up the failure budget before.
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    outcome = lifecycle.reap_expired_leases()
    assert outcome["failed"] == [job.pk]


def test_a_cancel_wins_over_a_pending_pause(api, dataset, tiny_bert):
    job = make_job(api, dataset)
    claimed, token = lifecycle.job_claim(job_id=job.pk, worker="w", device_class="cpu")
    api.post(f"/api/v1/jobs/{job.pk}/pause")
    api.post(f"/api/v1/jobs/{job.pk}/cancel")
    reporter = JobReporter(claimed, token, "cpu")
    reporter.heartbeat()
    assert reporter.should_stop() == "cancelled"
    refused = api.post(f"/api/v1/jobs/{job.pk}/pause")
    assert refused.status_code == 409


def test_cancel_a_paused_job(api, dataset, tiny_bert):
    job = make_job(api, dataset)
    api.post(f"/api/v1/jobs/{job.pk}/pause")
    body = api.post(f"/api/v1/jobs/{job.pk}/cancel").json()
    assert body["state"] == "cancelled" and body["finished_at"]
    for action in ("pause", "resume"):
        response = api.post(f"/api/v1/jobs/{job.pk}/{action}")
        assert response.status_code == 409, action
    assert JobEvent.objects.filter(job=job, message__startswith="Cancelled while paused").exists()


def test_finished_and_compression_jobs_cannot_be_paused(api, dataset, tiny_bert):
    job = make_job(api, dataset)
    api.post(f"/api/v1/jobs/{job.pk}/cancel")
    ended = api.post(f"/api/v1/jobs/{job.pk}/pause")
    assert ended.status_code == 409 and ended.json()["error"]["code"] == "job_finished"
    other = make_job(api, dataset)
    Job.objects.filter(pk=other.pk).update(kind="quantize")
    refused = api.post(f"/api/v1/jobs/{other.pk}/pause")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "pause_unsupported"
    assert Job.objects.get(pk=other.pk).state == JobState.QUEUED


def test_reaper_watchdog_and_sweeper_leave_paused_jobs_alone(api, dataset, tiny_bert, monkeypatch, settings):
    rung = []
    monkeypatch.setattr(celery_app, "send_task", lambda name, args, **kw: rung.append(args[0]))
    job = make_job(api, dataset)
    api.post(f"/api/v1/jobs/{job.pk}/pause")
    long_ago = timezone.now() - timedelta(hours=3)
    # Every column the reaper, the watchdog and the sweeper read, set as for a job they would take.
    Job.objects.filter(pk=job.pk).update(lease_expires_at=long_ago, progress_at=long_ago, step_seconds=0.1,
                                         last_dispatched_at=long_ago, queued_at=long_ago)
    assert lifecycle.reap_expired_leases() == {"requeued": [], "failed": [], "cancelled": []}
    assert lifecycle.sweep_lost_doorbells() == [] and rung == []
    assert Job.objects.get(pk=job.pk).state == JobState.PAUSED


def test_a_worker_lost_while_pausing_leaves_the_job_paused(api, dataset, tiny_bert):
    job = make_job(api, dataset)
    allowed = job.max_attempts
    lifecycle.job_claim(job_id=job.pk, worker="w", device_class="cpu")
    api.post(f"/api/v1/jobs/{job.pk}/pause")
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    outcome = lifecycle.reap_expired_leases()
    assert outcome["paused"] == [job.pk] and outcome["requeued"] == []
    job.refresh_from_db()
    assert job.state == JobState.PAUSED and job.lease_token is None and job.max_attempts == allowed + 1


def test_job_page_pause_and_resume_buttons(client, tenant_a, api, dataset, tiny_bert, django_capture_on_commit_callbacks):
    client.force_login(tenant_a.owner)
    job = make_job(api, dataset)
    page = client.get(f"/o/acme/jobs/{job.pk}").content.decode()
    assert 'data-testid="job-pause"' in page and 'data-testid="job-resume"' not in page
    assert client.post(f"/o/acme/jobs/{job.pk}/pause").status_code == 302
    assert Job.objects.get(pk=job.pk).state == JobState.PAUSED
    page = client.get(f"/o/acme/jobs/{job.pk}").content.decode()
    assert 'data-testid="job-resume"' in page and 'data-testid="job-pause"' not in page
    assert 'hx-trigger="every 2s"' not in page  # nothing changes while paused: no polling
    with django_capture_on_commit_callbacks(execute=False):
        assert client.post(f"/o/acme/jobs/{job.pk}/resume").status_code == 302
    assert Job.objects.get(pk=job.pk).state == JobState.QUEUED
    lifecycle.job_claim(job_id=job.pk, worker="w", device_class="cpu")
    client.post(f"/o/acme/jobs/{job.pk}/pause")
    page = client.get(f"/o/acme/jobs/{job.pk}").content.decode()
    assert "Pausing…" in page and 'data-testid="job-resume"' not in page


def test_admin_pause_and_resume_actions(client, make_user, api, dataset, tiny_bert, django_capture_on_commit_callbacks):
    client.force_login(make_user(email="ops@lathe.local", is_staff=True, is_superuser=True))
    ids = [make_job(api, dataset).pk for _ in range(2)]
    url = reverse("admin:jobs_job_changelist")
    client.post(url, {"action": "pause", "_selected_action": ids})
    assert set(Job.objects.filter(pk__in=ids).values_list("state", flat=True)) == {JobState.PAUSED}
    with django_capture_on_commit_callbacks(execute=False):
        client.post(url, {"action": "resume", "_selected_action": [ids[0]]})
    assert dict(Job.objects.filter(pk__in=ids).values_list("id", "state")) == {ids[0]: JobState.QUEUED,
                                                                               ids[1]: JobState.PAUSED}


def test_a_pause_that_raced_a_requeue_still_pauses_and_an_operator_requeue_clears_it(api, dataset, tiny_bert,
                                                                                     django_capture_on_commit_callbacks):
    job = make_job(api, dataset)
    # The reaper re-queued the attempt just as a pause landed: queued, with the flag set.
    Job.objects.filter(pk=job.pk).update(pause_requested_at=timezone.now())
    assert api.post(f"/api/v1/jobs/{job.pk}/pause").json()["state"] == "paused"
    api.post(f"/api/v1/jobs/{job.pk}/cancel")
    with django_capture_on_commit_callbacks(execute=False):
        assert lifecycle.job_requeue(job=Job.objects.get(pk=job.pk), reason="test")
    job.refresh_from_db()
    assert job.state == JobState.QUEUED and job.pause_requested_at is None and job.cancel_requested_at is None
