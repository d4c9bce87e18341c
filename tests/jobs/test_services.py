"""Job submission, claiming, fencing, reaping and cancelling against the real
database (no worker process here; see test_worker_*.py for those)."""
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing.models import UsageSegment
from config.celery_app import app as celery_app
from jobs import lifecycle
from jobs.models import Job, JobEvent, JobState

pytestmark = pytest.mark.django_db


def submit(client, dataset, status=201, headers=None, **body):
    payload = {"dataset_id": dataset.pk, "base_model": "tiny-bert", **body}
    response = client.post("/api/v1/jobs", payload, format="json", **(headers or {}))
    assert response.status_code == status, response.content
    return response.json()


@pytest.fixture
def client(tenant_a, api_for):
    return api_for(tenant_a.key(scopes=["write"]))


def test_submit_resolves_auto_and_queues(client, dataset, tiny_bert, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        job = submit(client, dataset, hyperparameters={"epochs": 2, "learning_rate": "auto"})
    assert len(callbacks) == 1  # the doorbell rings only after commit
    assert job["state"] == "queued" and job["queue_position"] == 1
    assert job["requested"] == {"epochs": 2, "learning_rate": "auto"}
    assert job["spec"]["epochs"] == 2 and job["spec"]["learning_rate"] == 5e-5  # tiny-bert has no parameter count
    assert job["spec"]["max_length"] % 8 == 0 and job["spec"]["max_length"] <= 32
    assert "lora_r" not in job["spec"] and len(job["labels"]) == 4
    assert job["dataset"] == {"id": dataset.pk, "version": 1, "name": "slice"}


@pytest.mark.parametrize("body,field", [
    ({"hyperparameters": {"epochs": 0}}, "hyperparameters.epochs"),
    ({"hyperparameters": {"learning_rate": "fast"}}, "hyperparameters.learning_rate"),
    ({"hyperparameters": {"batch_size": 2.5}}, "hyperparameters.batch_size"),
    ({"hyperparameters": {"momentum": 0.9}}, "hyperparameters.momentum"),
    ({"hyperparameters": {"lora_targets": []}}, "hyperparameters.lora_targets"),
    ({"hyperparameters": {"lora_r": 8}}, "method"),
    ({"base_model": "gpt-99"}, "base_model"),
    ({"dataset_id": 999999}, "dataset_id"),
    ({"method": "qlora"}, "method"),
])
def test_bad_submission_names_the_field_and_creates_nothing(client, dataset, tiny_bert, body, field):
    error = submit(client, dataset, status=400, **body)["error"]
    assert field in error["fields"], error
    assert not Job.objects.exists()


def test_idempotency_key(client, dataset, tiny_bert):
    first = client.post("/api/v1/jobs", {"dataset_id": dataset.pk, "base_model": "tiny-bert"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = client.post("/api/v1/jobs", {"dataset_id": dataset.pk, "base_model": "tiny-bert"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 201 and again.status_code == 200 and again["Idempotent-Replayed"] == "true"
    assert first.json()["id"] == again.json()["id"] and Job.objects.count() == 1
    other = client.post("/api/v1/jobs", {"dataset_id": dataset.pk, "base_model": "tiny-bert", "method": "lora"}, format="json",
                        HTTP_IDEMPOTENCY_KEY="k-1")
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert Job.objects.count() == 1


def make_job(client, dataset):
    return Job.objects.get(pk=submit(client, dataset)["id"])


def test_claim_is_exclusive_and_fenced(client, dataset, tiny_bert):
    job = make_job(client, dataset)
    job_claimed, token = lifecycle.job_claim(job_id=job.pk, worker="w1", device_class="cpu")
    assert job_claimed.state == JobState.RUNNING and job_claimed.attempts == 1
    assert lifecycle.job_claim(job_id=job.pk, worker="w2", device_class="cpu") is None  # a doubled doorbell
    now = timezone.now()
    assert lifecycle.record_usage(job=job_claimed, token=token, started_at=now - timedelta(seconds=3), ended_at=now, device_class="cpu")
    assert not lifecycle.record_usage(job=job_claimed, token="00000000-0000-0000-0000-000000000000",
                                     started_at=now, ended_at=now + timedelta(seconds=5), device_class="cpu")
    assert list(UsageSegment.objects.values_list("seconds", flat=True)) == [Decimal("3.000")]


def test_concurrency_limit_per_organization(client, dataset, tiny_bert, settings):
    settings.LATHE_MAX_CONCURRENT_JOBS = 1
    first, second = make_job(client, dataset), make_job(client, dataset)
    assert lifecycle.job_claim(job_id=first.pk, worker="w", device_class="cpu") is not None
    assert lifecycle.job_claim(job_id=second.pk, worker="w", device_class="cpu") is None
    assert Job.objects.get(pk=second.pk).state == JobState.QUEUED


def test_reaper_requeues_then_fails_when_attempts_run_out(client, dataset, tiny_bert, django_capture_on_commit_callbacks):
    job = make_job(client, dataset)
    Job.objects.filter(pk=job.pk).update(max_attempts=2)
    for attempt in (1, 2):
        claimed, token = lifecycle.job_claim(job_id=job.pk, worker=f"w{attempt}", device_class="cpu")
        Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
        with django_capture_on_commit_callbacks(execute=False):
            outcome = lifecycle.reap_expired_leases()
        if attempt == 1:
            assert outcome == {"requeued": [job.pk], "failed": [], "cancelled": []}
            assert Job.objects.get(pk=job.pk).state == JobState.QUEUED
            # The zombie's late heartbeat is fenced off: nothing billed.
            now = timezone.now()
            assert not lifecycle.record_usage(job=claimed, token=token, started_at=now, ended_at=now, device_class="cpu")
        else:
            assert outcome == {"requeued": [], "failed": [job.pk], "cancelled": []}
    job.refresh_from_db()
    assert job.state == JobState.FAILED and "Worker lost 2 times" in job.failure_reason
    assert UsageSegment.objects.count() == 0


def test_sweeper_rings_again_for_lost_doorbells(client, dataset, tiny_bert, settings, monkeypatch):
    rung = []
    # Doorbells are rung by task name through the Celery app; any other name would show in `rung`.
    monkeypatch.setattr(celery_app, "send_task",
                        lambda name, args, **kw: rung.append(args[0] if name == "jobs.tasks.run_job" else name))
    job = make_job(client, dataset)
    Job.objects.filter(pk=job.pk).update(last_dispatched_at=timezone.now() - timedelta(hours=1))
    assert lifecycle.sweep_lost_doorbells() == [job.pk] and rung == [job.pk]
    assert lifecycle.sweep_lost_doorbells() == []  # just rung: not stale any more


def test_cancel_queued_running_and_finished(client, dataset, tiny_bert):
    queued = make_job(client, dataset)
    body = client.post(f"/api/v1/jobs/{queued.pk}/cancel").json()
    assert body["state"] == "cancelled" and body["billed_seconds"] == 0
    assert lifecycle.job_claim(job_id=queued.pk, worker="w", device_class="cpu") is None  # never starts
    running = make_job(client, dataset)
    lifecycle.job_claim(job_id=running.pk, worker="w", device_class="cpu")
    body = client.post(f"/api/v1/jobs/{running.pk}/cancel").json()
    assert body["state"] == "running" and body["cancel_requested_at"]
    again = client.post(f"/api/v1/jobs/{queued.pk}/cancel")
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_finished"


def test_dataset_version_in_use_cannot_be_deleted(client, dataset, tiny_bert, tenant_a, api_for):
    make_job(client, dataset)
    admin = api_for(tenant_a.key(scopes=["admin"]))
    response = admin.delete(f"/api/v1/datasets/{dataset.pk}/versions/1")
    assert response.status_code == 409 and response.json()["error"]["code"] == "dataset_in_use"
    assert dataset.versions.count() == 1


def test_job_list_filters(client, dataset, tiny_bert):
    a, b = make_job(client, dataset), make_job(client, dataset)
    client.post(f"/api/v1/jobs/{a.pk}/cancel")
    assert [j["id"] for j in client.get("/api/v1/jobs?state=cancelled").json()["results"]] == [a.pk]
    assert [j["id"] for j in client.get("/api/v1/jobs?state=queued").json()["results"]] == [b.pk]
    assert client.get("/api/v1/jobs?state=bogus").status_code == 400
    assert JobEvent.objects.filter(job=a, message__contains="Cancelled before it started").exists()
