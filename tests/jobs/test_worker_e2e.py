"""A real Celery worker process runs tiny-model fine-tunes end to end (on the
filesystem broker, or Redis in CI), through the same API a customer uses."""
from __future__ import annotations

import io
import zipfile
from decimal import Decimal

import pytest
from django.db.models import Max, Min, Sum

from billing.models import UsageSegment
from jobs.models import Job, JobCheckpoint, JobState
from tests.celery_worker import celery_worker

from .worker_helpers import job_state, submit, wait_for, worker_env

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]






def test_finetune_end_to_end_through_a_real_worker(tmp_path, fast_jobs, tenant_a, api_for, dataset, tiny_bert):
    client = api_for(tenant_a.key(scopes=["write"]))
    with celery_worker(tmp_path / "worker.log", extra_env=worker_env(fast_jobs, tmp_path)) as (queue, _process):
        fast_jobs.LATHE_DEFAULT_QUEUE = queue
        job_id = submit(client, dataset, epochs=3)
        job = wait_for(lambda: job_state(job_id).is_terminal and job_state(job_id), timeout=180,
                       message=f"job to finish; worker log:\n{(tmp_path / 'worker.log')}")
    assert job.state == JobState.SUCCEEDED, (job.failure_reason, (tmp_path / "worker.log").read_text()[-3000:])
    body = client.get(f"/api/v1/jobs/{job_id}").json()
    assert body["progress"]["step"] == body["progress"]["total_steps"] > 0
    assert body["result"]["best_metrics"]["accuracy"] > 0 and body["attempts"] == 1
    assert body["device_class"] == "cpu"
    # Usage: contiguous segments covering the run, all under one lease.
    segments = UsageSegment.objects.filter(job_id=job_id)
    assert segments.count() >= 1 and segments.values("lease_token").distinct().count() == 1
    span = segments.aggregate(a=Min("started_at"), b=Max("ended_at"))
    total = segments.aggregate(s=Sum("seconds"))["s"]
    assert abs(total - Decimal((span["b"] - span["a"]).total_seconds())) < Decimal("0.01") * segments.count()
    assert Decimal(str(body["billed_seconds"])) == total
    # Metrics and events with cursors.
    metrics = client.get(f"/api/v1/jobs/{job_id}/metrics").json()
    assert any("accuracy" in m["values"] for m in metrics["results"])
    later = client.get(f"/api/v1/jobs/{job_id}/metrics?after={metrics['next_after']}").json()
    assert later["results"] == []
    events = [e["message"] for e in client.get(f"/api/v1/jobs/{job_id}/events").json()["results"]]
    assert any("Attempt 1 started" in m for m in events) and events[-1] == "Job succeeded."
    # Artifacts: listed with sizes, streamed, and the model loads and predicts.
    artifacts = {a["name"]: a for a in client.get(f"/api/v1/jobs/{job_id}/artifacts").json()}
    assert set(artifacts) == {"model.zip", "eval_report.json", "README.md"}
    download = client.get(f"/api/v1/jobs/{job_id}/artifacts/model.zip")
    content = b"".join(download.streaming_content)
    assert download.status_code == 200 and len(content) == artifacts["model.zip"]["size_bytes"]
    folder = tmp_path / "downloaded"
    zipfile.ZipFile(io.BytesIO(content)).extractall(folder)
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        label = model.config.id2label[int(model(**tokenizer(["my card has not arrived"], return_tensors="pt")).logits.argmax(-1))]
    assert label in job.labels


def test_doubled_doorbell_runs_once_and_cancel_bills_exactly(tmp_path, fast_jobs, tenant_a, api_for, long_dataset, tiny_bert):
    from jobs.lifecycle import dispatch

    client = api_for(tenant_a.key(scopes=["write"]))
    with celery_worker(tmp_path / "worker.log", extra_env=worker_env(fast_jobs, tmp_path)) as (queue, _process):
        fast_jobs.LATHE_DEFAULT_QUEUE = queue
        job_id = submit(client, long_dataset, epochs=50, batch_size=4, early_stopping_patience=0)
        dispatch(job_id=job_id)  # ring twice more: the claim lets one through
        dispatch(job_id=job_id)
        # Past its first evaluation (a best checkpoint exists, so there is a model to keep), not a step count:
        # how far a job gets before the cancel lands depends on the machine's load.
        wait_for(lambda: JobCheckpoint.objects.filter(job_id=job_id, is_best=True).exists(),
                 message="the job's first best checkpoint")
        cancelled = client.post(f"/api/v1/jobs/{job_id}/cancel").json()
        assert cancelled["cancel_requested_at"]
        job = wait_for(lambda: job_state(job_id).is_terminal and job_state(job_id), timeout=60, message="cancellation")
    assert job.state == JobState.CANCELLED and job.attempts == 1
    assert job.step < job.total_steps
    segments = UsageSegment.objects.filter(job_id=job_id).order_by("id")
    total = segments.aggregate(s=Sum("seconds"))["s"]
    running_seconds = Decimal((job.finished_at - job.started_at).total_seconds())
    # Billed = the time it ran: contiguous segments from claim to stop, nothing after.
    assert abs(total - running_seconds) < Decimal("1.0"), (total, running_seconds)
    assert segments.last().ended_at <= job.finished_at
    for earlier, later in zip(segments, segments[1:]):
        assert earlier.ended_at == later.started_at
    # The best checkpoint was kept and exported.
    names = {a["name"] for a in tenant_client_artifacts(client, job_id)}
    assert "model.zip" in names
    assert Job.objects.filter(pk=job_id, events__message__contains="Attempt 1 started").count() == 1


def tenant_client_artifacts(client, job_id):
    return client.get(f"/api/v1/jobs/{job_id}/artifacts").json()
