"""Try-it end to end with a real inference worker process (thread pool, its own queue): a classifier cold
then warm, answers compared with the model run directly in this test (an independent computation), the LRU
with room for one model (the second evicts the first, which then loads cold again), the worker time billed
at the plan's rate on its own usage line, and the dashboard's Try-it card."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import torch
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.utils import timezone

from billing.ledger import rollup_inference_usage
from billing.models import InferenceUsage, LedgerEntry, UsageKind
from registry.services import model_upload
from serving.models import InferenceRequest, InferenceWorker, RequestState
from tenancy.actors import Actor
from tests.model_archives import tiny_classifier_folder, zip_bytes
from tests.jobs.worker_helpers import wait_for

from .helpers import inference_worker, store_model, succeeded_job

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

UPLOAD_LABELS = ("billing", "card", "travel")
JOB_LABELS = ("yes", "no")
TEXTS = ["Where is my card?", "I was charged twice for one coffee", "hello"]


def direct_probabilities(folder, texts):
    """The model run here, with transformers, one text at a time (no padding)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    out = []
    with torch.inference_mode():
        for text in texts:
            batch = tokenizer([text], truncation=True, max_length=128, return_tensors="pt")
            out.append(dict(zip(labels, torch.softmax(model(**batch).logits.float(), -1)[0].tolist())))
    return out


@pytest.fixture
def models(tenant_a, dataset, media, tmp_path):
    upload_folder = tiny_classifier_folder(tmp_path / "upload", labels=UPLOAD_LABELS)
    uploaded = model_upload(organization=tenant_a.organization, actor=Actor.for_membership(tenant_a.owner_membership),
                            uploaded=SimpleUploadedFile("support.zip", zip_bytes(upload_folder)), name="support")
    job_folder = tiny_classifier_folder(tmp_path / "job", labels=JOB_LABELS, layers=1)
    job = succeeded_job(tenant_a, dataset.latest_version, name="yes-no", labels=JOB_LABELS)
    store_model(job, zip_bytes(job_folder))
    return {"upload": (uploaded, upload_folder), "job": (job, job_folder)}


def check_answer(body, folder, texts):
    expected = direct_probabilities(folder, texts)
    assert len(body["results"]) == len(texts)
    for result, probabilities in zip(body["results"], expected):
        best = max(probabilities, key=probabilities.get)
        assert result["label"] == best and result["score"] == pytest.approx(probabilities[best], abs=1e-4)
        assert {s["label"]: s["score"] for s in result["scores"]} == pytest.approx(probabilities, abs=1e-4)
        assert [s["score"] for s in result["scores"]] == sorted((s["score"] for s in result["scores"]), reverse=True)
    assert body["latency_ms"] > 0 and body["worker_ms"] > 0 and body["latency_ms"] >= body["worker_ms"] * 0.5


def test_classifiers_cold_warm_evicted_billed_and_tried_on_the_dashboard(settings, tmp_path, tenant_a, api_for, models,
                                                                          client):
    api = api_for(tenant_a.key())
    uploaded, upload_folder = models["upload"]
    job, job_folder = models["job"]
    with inference_worker(settings, tmp_path, max_models=1):
        cold = api.post(f"/api/v1/models/{uploaded.pk}/predict", {"inputs": TEXTS}, format="json")
        assert cold.status_code == 200, cold.content
        body = cold.json()
        assert body["object"] == "predictions" and body["warm"] is False and body["load_ms"] > 0
        assert body["model"]["key"] == f"upload-{uploaded.pk}" and body["model"]["variant"] == "fp32"
        assert body["device_class"] == "cpu"
        check_answer(body, upload_folder, TEXTS)

        warm = api.post(f"/api/v1/models/{uploaded.pk}/predict", {"inputs": TEXTS[:1]}, format="json").json()
        assert warm["warm"] is True and warm["load_ms"] == 0
        check_answer(warm, upload_folder, TEXTS[:1])

        # Room for one model: the job's model evicts the uploaded one, which then loads cold again.
        other = api.post(f"/api/v1/jobs/{job.pk}/predict", {"inputs": TEXTS[1:]}, format="json")
        assert other.status_code == 200, other.content
        assert other.json()["warm"] is False and other.json()["model"]["key"] == f"job-{job.pk}/model.zip"
        check_answer(other.json(), job_folder, TEXTS[1:])

        def heartbeat_holds_only_the_job_model():
            connection.close()
            row = InferenceWorker.objects.get(queue=settings.LATHE_INFERENCE_QUEUE)
            return row if row.evictions == 1 and len(row.loaded) == 1 else None

        row = wait_for(heartbeat_holds_only_the_job_model, timeout=60, message="the heartbeat after the eviction")
        assert row.loaded == [job.artifacts.get(name="model.zip").sha256]
        again = api.post(f"/api/v1/models/{uploaded.pk}/predict", {"inputs": TEXTS[:1]}, format="json").json()
        assert again["warm"] is False
        check_answer(again, upload_folder, TEXTS[:1])

        # The dashboard's Try-it card: a form POST, answered as a table of labels and probabilities.
        client.force_login(tenant_a.owner)
        page = client.post(f"/o/{tenant_a.organization.slug}/models/{uploaded.pk}/try", {"text": TEXTS[0]})
        assert page.status_code == 200
        html = page.content.decode()
        expected = direct_probabilities(upload_folder, TEXTS[:1])[0]
        best = max(expected, key=expected.get)
        assert 'data-testid="try-it-result"' in html and best in html and f"{100 * expected[best]:.1f}" in html
        assert "ms" in html
        job_page = client.post(f"/o/{tenant_a.organization.slug}/jobs/{job.pk}/try",
                               {"text": TEXTS[1], "artifact": "model.zip"})
        assert job_page.status_code == 200 and 'data-testid="try-it-result"' in job_page.content.decode()

    # Billing: each answered request's worker time metered (load included when cold), rolled up hourly into
    # ledger entries of kind inference, priced at the plan's cpu rate, on the usage line.
    connection.close()
    requests = list(InferenceRequest.objects.filter(organization=tenant_a.organization).order_by("id"))
    assert [r.state for r in requests] == [RequestState.SUCCEEDED] * 6
    assert [r.warm for r in requests] == [False, True, False, False, True, False]
    usage = list(InferenceUsage.objects.filter(organization=tenant_a.organization).order_by("id"))
    assert len(usage) == 6 and all(u.seconds > 0 for u in usage)
    assert [u.seconds for u in usage] == [r.worker_seconds for r in requests]
    assert all(r.payload == {} for r in requests)  # the texts are not kept once answered
    total = sum((u.seconds for u in usage), Decimal("0"))
    from billing.services import account_for

    rate = account_for(organization=tenant_a.organization).plan.rate_for("cpu")
    expected_micros = int((total * rate * 1_000_000).quantize(Decimal(1)))
    summary = api.get("/api/v1/billing/usage").json()
    assert summary["inference"]["requests"] == 6
    assert summary["inference"]["seconds"] == pytest.approx(float(total), abs=1e-3)
    assert Decimal(summary["inference"]["usd"]) == pytest.approx(Decimal(expected_micros) / 1_000_000, abs=Decimal("0.0001"))
    rollup_inference_usage(now=timezone.now() + timedelta(hours=1))  # every hour so far is closed by then
    entries = list(LedgerEntry.objects.filter(organization=tenant_a.organization, usage_kind=UsageKind.INFERENCE))
    assert entries and all(e.job_id is None and e.device_class == "cpu" and e.usd_per_second == rate for e in entries)
    assert sum(e.seconds for e in entries) == total
    assert sum(e.amount_micros for e in entries) == pytest.approx(expected_micros, abs=len(entries))
    assert not InferenceUsage.objects.filter(ledger_entry__isnull=True).exists()
    client.force_login(tenant_a.owner)
    billing_page = client.get(f"/o/{tenant_a.organization.slug}/billing").content.decode()
    assert 'data-testid="inference-usage"' in billing_page and "Inference" in billing_page
