"""Batch predictions on a real Celery worker: a job run whole, then a worker killed (SIGKILL, the process
group) after at least one chunk is reported; a second worker resumes after the last chunk. The final
predictions file holds every input id exactly once and matches predictions computed here, directly with
transformers; the lost attempt's seconds are billed once (what it ran before the kill, less the work after
its last chunk, which the second attempt redid)."""
from __future__ import annotations

import csv
import io
import json

import pytest
import torch
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from billing.models import UsageSegment
from jobs import lifecycle
from jobs.models import JobCheckpoint, JobEvent, JobState
from tests.celery_worker import celery_worker
from tests.jobs.conftest import slice_csv
from tests.jobs.worker_helpers import job_state, wait_for, worker_env
from tests.model_archives import tiny_classifier_folder

from .predict_helpers import model_job

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def many_rows_csv(copies: int) -> bytes:
    """The 240-row slice (20 labels) `copies` times, each copy's texts made distinct."""
    rows = list(csv.reader(io.StringIO(slice_csv(labels=20).decode())))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(rows[0])
    for copy in range(copies):
        for text, label in rows[1:]:
            writer.writerow([f"{text} (copy {copy})" if copy else text, label])
    return out.getvalue().encode()


@pytest.fixture
def big_dataset(tenant_a, media):
    from corpora.services import dataset_upload
    from tenancy.actors import Actor

    version = dataset_upload(organization=tenant_a.organization, actor=Actor.for_membership(tenant_a.owner_membership),
                             uploaded=SimpleUploadedFile("big.csv", many_rows_csv(8)), validation_fraction=0.1)
    return version.dataset


def every_row(version) -> list[dict]:
    rows = []
    for name in (version.train_file, version.validation_file):
        with default_storage.open(name, "rb") as fh:
            rows += [json.loads(line) for line in fh.read().decode().splitlines() if line.strip()]
    return rows


def direct_predictions(folder, texts) -> list[tuple[str, list[float]]]:
    """The model run here with transformers (not the serving runtime), in batches of 64."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), 64):
            batch = tokenizer(texts[start:start + 64], truncation=True, max_length=64, padding=True, return_tensors="pt")
            for p in torch.softmax(model(**batch).logits.float(), -1).tolist():
                out.append((labels[max(range(len(p)), key=p.__getitem__)], p))
    return labels, out


def stored_predictions(job_id: int) -> list[dict]:
    artifact = job_state(job_id).artifacts.get(name="predictions.jsonl")
    with default_storage.open(artifact.storage_name, "rb") as fh:
        return [json.loads(line) for line in fh.read().decode().splitlines()]


def submit(client, source, dataset, **options) -> int:
    response = client.post("/api/v1/jobs", {"kind": "predict", "model": {"job_id": source.pk},
                                            "dataset_id": dataset.pk, **options}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


@pytest.fixture
def source(tenant_a, big_dataset, tmp_path):
    version = big_dataset.latest_version
    labels = sorted(version.report["labels"]["counts"])
    folder = tiny_classifier_folder(tmp_path / "model", labels=labels)
    return model_job(tenant_a, version, folder, labels=labels), folder


def check_predictions(job_id, version, folder):
    rows = every_row(version)
    predictions = stored_predictions(job_id)
    ids = [p["id"] for p in predictions]
    assert len(ids) == len(set(ids)) == len(rows)  # every input exactly once
    assert ids == [str(i) for i in range(1, len(rows) + 1)]  # the row numbers, in order
    labels, expected = direct_predictions(folder, [r["text"] for r in rows])
    for row, prediction, (label, probabilities) in zip(rows, predictions, expected):
        assert prediction["label"] == row["label"]
        assert prediction["prediction"] == label
        assert [prediction["scores"][name] for name in labels] == pytest.approx(probabilities, abs=1e-4)
    return predictions


def test_a_predict_job_runs_on_a_real_worker_and_reports(tmp_path, fast_jobs, tenant_a, api_for, big_dataset, source):
    model, folder = source
    client = api_for(tenant_a.key(scopes=["write"]))
    env = worker_env(fast_jobs, tmp_path, LATHE_SERVING_CACHE_DIR=str(tmp_path / "cache"))
    with celery_worker(tmp_path / "w.log", extra_env=env) as (queue, _worker):
        fast_jobs.LATHE_DEFAULT_QUEUE = queue
        job_id = submit(client, model, big_dataset, chunk_rows=500)
        job = wait_for(lambda: (j := job_state(job_id)).is_terminal and j, timeout=240, message="the job to finish")
    assert job.state == JobState.SUCCEEDED and job.attempts == 1, job.failure_reason
    predictions = check_predictions(job_id, big_dataset.latest_version, folder)
    report = job.result["predictions"]
    correct = sum(p["prediction"] == p["label"] for p in predictions)
    assert report["metrics"]["accuracy"] == pytest.approx(correct / len(predictions))
    assert report["rows"] == len(predictions) and report["resumed_rows"] == 0
    assert job.step == job.total_steps == len(predictions)
    assert {a.name for a in job.artifacts.all()} == {"predictions.jsonl", "predictions.csv", "predict_report.json",
                                                      "confusion_matrix.svg"}
    assert job.result["throughput"]["method"] == "predict"  # what the next quote learns from
    body = client.get(f"/api/v1/jobs/{job_id}").json()
    assert body["result"]["predictions"]["metrics"]["accuracy"] == report["metrics"]["accuracy"]


def test_a_killed_worker_is_replaced_and_the_file_resumes_after_its_last_chunk(tmp_path, fast_jobs, tenant_a, api_for,
                                                                              big_dataset, source):
    from django.utils import timezone

    from billing.ledger import rollup_usage

    model, folder = source
    client = api_for(tenant_a.key(scopes=["write"]))
    env = worker_env(fast_jobs, tmp_path, LATHE_SERVING_CACHE_DIR=str(tmp_path / "cache"))
    with celery_worker(tmp_path / "a.log", extra_env=env) as (queue, first):
        fast_jobs.LATHE_DEFAULT_QUEUE = queue
        job_id = submit(client, model, big_dataset, chunk_rows=4, batch_size=4)
        wait_for(lambda: JobCheckpoint.objects.filter(job_id=job_id).exists(), message="a first chunk")
        import os
        import signal

        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        killed_at = timezone.now()
    chunks_before = JobCheckpoint.objects.filter(job_id=job_id, attempt=1).count()
    assert chunks_before >= 1
    assert job_state(job_id).state == JobState.RUNNING and not job_state(job_id).artifacts.exists()
    wait_for(lambda: (j := job_state(job_id)).lease_expires_at and j.lease_expires_at < timezone.now(), timeout=30,
             message="the lease to expire")
    assert lifecycle.reap_expired_leases()["requeued"] == [job_id]
    with celery_worker(tmp_path / "b.log", queue=queue, extra_env=env):
        job = wait_for(lambda: (j := job_state(job_id)).is_terminal and j, timeout=240, message="the resumed job")
    assert job.state == JobState.SUCCEEDED and job.attempts == 2, job.failure_reason
    resumed = JobEvent.objects.get(job_id=job_id, attempt=2, message__startswith="Resumed after chunk")
    done_before = int(resumed.message.split(": ")[1].split(" of ")[0].replace(",", ""))
    assert done_before >= 4 * chunks_before  # at least every chunk reported (one written, not reported, counts too)
    report = job.result["predictions"]
    assert report["resumed_rows"] == done_before and report["predicted_rows"] == report["rows"] - done_before > 0
    check_predictions(job_id, big_dataset.latest_version, folder)

    # The dead attempt billed only what ran, and what attempt 2 redid (after attempt 1's last chunk) not at all.
    first_attempt = UsageSegment.objects.filter(job_id=job_id, attempt=1)
    assert first_attempt.exists() and all(s.ended_at <= killed_at for s in first_attempt)
    last_chunk = JobCheckpoint.objects.filter(job_id=job_id, attempt=1).order_by("-created_at").first().created_at
    redone = first_attempt.filter(ended_at__gt=last_chunk)
    assert all(hasattr(s, "exclusion") for s in redone)
    assert not first_attempt.filter(ended_at__lte=last_chunk, exclusion__isnull=False).exists()
    entries = rollup_usage()
    expected = {(1, True), (2, True)} | ({(1, False)} if redone.exists() else set())
    assert {(e.attempt, e.billable) for e in entries} == expected
    billable = sum(e.seconds for e in entries if e.billable)
    assert billable == sum(s.seconds for s in UsageSegment.objects.filter(job_id=job_id) if not hasattr(s, "exclusion"))
    api_job = client.get(f"/api/v1/jobs/{job_id}").json()
    assert api_job["billed_seconds"] == pytest.approx(float(billable), abs=0.01)
