"""POST /api/v1/jobs with kind predict: what it queues (spec, quote, event), the quote endpoint, and a
hostile-input table — every bad body a 4xx naming the field, never a 500, no job written."""
from __future__ import annotations

import json

import pytest

from jobs.models import Job, JobKind, JobState
from tests.model_archives import DEFAULT_LABELS, tiny_classifier_folder

from .predict_helpers import model_job

pytestmark = pytest.mark.django_db
HUGE = "__1e400__"  # sent as the JSON number 1e400 (a client's json.dumps refuses it)


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    return tiny_classifier_folder(tmp_path_factory.mktemp("predict-clf"))


@pytest.fixture
def setup(tenant_a, dataset, classifier_dir):
    version = dataset.latest_version
    assert sorted(version.report["labels"]["counts"]) == sorted(DEFAULT_LABELS)
    job = model_job(tenant_a, version, classifier_dir, labels=DEFAULT_LABELS)
    return api(tenant_a), job, dataset


def api(tenant):
    from tests.conftest import bearer_client

    return bearer_client(tenant.key(scopes=["read", "write"]))


def test_a_predict_job_is_queued_with_its_model_options_and_quote(setup):
    client, source, dataset = setup
    body = {"kind": "predict", "model": {"job_id": source.pk}, "dataset_id": dataset.pk, "chunk_rows": 10}
    quoted = client.post("/api/v1/jobs/quote", body, format="json")
    assert quoted.status_code == 200, quoted.content
    assert quoted.json()["method"] == "predict" and quoted.json()["estimated_seconds"] > 0
    response = client.post("/api/v1/jobs", body, format="json")
    assert response.status_code == 201, response.content
    job = response.json()
    assert job["kind"] == "predict" and job["state"] == "queued" and job["source_job"] == source.pk
    assert job["spec"] == {"model": {"job_id": source.pk, "artifact": "model.zip"}, "batch_size": 32,
                           "max_new_tokens": 128, "chunk_rows": 10}
    assert job["labels"] == list(DEFAULT_LABELS)
    assert job["quote"]["quoted"]["estimated_seconds"] == quoted.json()["estimated_seconds"]
    version = dataset.latest_version
    rows = version.train_count + version.validation_count
    assert Job.objects.get(pk=job["id"]).events.first().message.endswith(
        f"every row ({rows:,}) of {dataset.name} v{version.number}, in chunks of 10 rows.")


@pytest.mark.parametrize("change, field, status", [
    ({"model": None}, "model", 400),
    ({"model": "job-1"}, "model", 400),
    ({"model": {"job_id": "1"}}, "model", 400),
    ({"model": {"job_id": HUGE}}, "model", 400),
    ({"model": {"job_id": 1, "uploaded_model_id": 2}}, "model", 400),
    ({"model": {"job_id": 1, "artifact": "a\x00b"}}, "model", 400),
    ({"model": {"job_id": 1, "extra": True}}, "model", 400),
    ({"model": {"job_id": 999999}}, None, 404),
    ({"dataset_id": None}, "dataset_id", 400),
    ({"dataset_id": "x"}, "dataset_id", 400),
    ({"dataset_id": 999999}, "dataset_id", 400),
    ({"dataset_version": 99}, "dataset_id", 400),
    ({"batch_size": 0}, "batch_size", 400),
    ({"batch_size": HUGE}, "batch_size", 400),
    ({"batch_size": "32"}, "batch_size", 400),
    ({"chunk_rows": True}, "chunk_rows", 400),
    ({"chunk_rows": 10**6}, "chunk_rows", 400),
    ({"max_new_tokens": -1}, "max_new_tokens", 400),
    ({"hyperparameters": {"epochs": 1}}, "hyperparameters", 400),
    ({"base_model": "tiny-bert"}, "base_model", 400),
    ({"models": []}, "models", 400),
    ({"nonsense": 1}, "nonsense", 400),
    ({"name": "x" * 101}, "name", 400),
    ({"name": "a\x00b"}, "name", 400),
    ({"max_cost": HUGE}, "max_cost", 400),
    ({"model": {"job_id": {"a": {"b": {"c": {"d": [[[[[]]]]]}}}}}}, "model", 400),
])
def test_hostile_predict_bodies_are_refused_by_field(setup, change, field, status):
    client, source, dataset = setup
    body = {"kind": "predict", "model": {"job_id": source.pk}, "dataset_id": dataset.pk, **change}
    before = Job.objects.count()
    raw = json.dumps(body).replace(f'"{HUGE}"', "1e400")
    response = client.post("/api/v1/jobs", raw, content_type="application/json")
    assert response.status_code == status, response.content
    if field:  # the field itself, or a part of it (model.artifact)
        fields = response.json()["error"]["fields"]
        assert any(name == field or name.startswith(f"{field}.") for name in fields), response.json()
    assert Job.objects.count() == before


def test_predict_only_fields_on_another_kind_are_refused(setup, tiny_bert):
    client, source, dataset = setup
    for name, value in (("model", {"job_id": source.pk}), ("chunk_rows", 5), ("batch_size", 4)):
        response = client.post("/api/v1/jobs", {"dataset_id": dataset.pk, "base_model": "tiny-bert", name: value},
                               format="json")
        assert response.status_code == 400 and name in response.json()["error"]["fields"], response.content


def test_a_model_of_the_wrong_family_or_task_is_refused_at_submission(setup, tenant_a):
    client, source, dataset = setup
    chat = Job.objects.create(organization=tenant_a.organization, kind=JobKind.CHAT_FINETUNE, state=JobState.SUCCEEDED,
                              dataset_version=dataset.latest_version, labels=[])
    chat.artifacts.create(organization=tenant_a.organization, name="model.zip", kind="model", storage_name="x",
                          size_bytes=1, sha256="0" * 64)
    response = client.post("/api/v1/jobs", {"kind": "predict", "model": {"job_id": chat.pk}, "dataset_id": dataset.pk},
                           format="json")
    assert response.status_code == 400
    assert "chat model" in response.json()["error"]["fields"]["model"][0]
    running = Job.objects.create(organization=tenant_a.organization, kind=JobKind.FINETUNE, state=JobState.RUNNING,
                                 dataset_version=dataset.latest_version)
    response = client.post("/api/v1/jobs", {"kind": "predict", "model": {"job_id": running.pk}, "dataset_id": dataset.pk},
                           format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "model_not_ready"


def test_another_organizations_model_or_dataset_is_not_found(setup, tenant_b):
    client, source, dataset = setup
    other = api(tenant_b)
    response = other.post("/api/v1/jobs", {"kind": "predict", "model": {"job_id": source.pk}, "dataset_id": dataset.pk},
                          format="json")
    assert response.status_code == 404
    assert not Job.objects.filter(organization=tenant_b.organization).exists()


def test_a_chat_model_predicts_a_chat_dataset_and_is_quoted_as_generation(setup, tenant_a):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from corpora.services import dataset_upload
    from tenancy.actors import Actor
    from tests.openai_compat.conftest import chat_jsonl

    client, classifier, text_dataset = setup
    version = dataset_upload(organization=tenant_a.organization, actor=Actor.for_membership(tenant_a.owner_membership),
                             uploaded=SimpleUploadedFile("facts.jsonl", chat_jsonl()), task="chat")
    chat = Job.objects.create(organization=tenant_a.organization, kind=JobKind.CHAT_FINETUNE, state=JobState.SUCCEEDED,
                              dataset_version=version, labels=[])
    chat.artifacts.create(organization=tenant_a.organization, name="model.zip", kind="model", storage_name="x",
                          size_bytes=1, sha256="0" * 64)
    body = {"kind": "predict", "model": {"job_id": chat.pk}, "dataset_id": version.dataset_id}
    short = client.post("/api/v1/jobs/quote", {**body, "max_new_tokens": 8}, format="json").json()
    long = client.post("/api/v1/jobs/quote", {**body, "max_new_tokens": 512}, format="json").json()
    assert short["method"] == long["method"] == "generate"
    assert long["tokens"] > short["tokens"]  # the replies' length is priced in
    created = client.post("/api/v1/jobs", {**body, "max_new_tokens": 8}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["spec"]["max_new_tokens"] == 8 and created.json()["method"] == "generate"
    # A classifier on chat lines, named on the model.
    refused = client.post("/api/v1/jobs", {**body, "model": {"job_id": classifier.pk}}, format="json")
    assert refused.status_code == 400 and "classifier" in refused.json()["error"]["fields"]["model"][0]


def test_a_running_predict_jobs_eta_is_its_rows_left_times_its_measured_row_time(setup, tenant_a):
    from datetime import timedelta

    from django.utils import timezone

    from jobs.estimates import eta

    _client, source, dataset = setup
    now = timezone.now()
    job = Job.objects.create(organization=tenant_a.organization, kind=JobKind.PREDICT, state=JobState.RUNNING,
                             dataset_version=dataset.latest_version, source_job=source, step=100, total_steps=300,
                             step_seconds=0.02, progress_at=now, started_at=now - timedelta(seconds=5),
                             spec={"model": {"job_id": source.pk, "artifact": "model.zip"}})
    found = eta(job=job, now=now)
    assert "200 rows left × 0.02 s a row" in found.basis
    assert abs((found.at - (now + timedelta(seconds=4))).total_seconds()) < 0.01


def test_a_stopped_attempt_becomes_the_jobs_outcome(setup, tenant_a):
    from decimal import Decimal

    from jobs.kind_runners import predict_outcome

    _client, source, dataset = setup
    job = Job(organization=tenant_a.organization, kind=JobKind.PREDICT, dataset_version=dataset.latest_version,
              max_cost=Decimal("2.5"))
    state, result, reason = predict_outcome(job, {"stopped": "cancelled", "rows_done": 1200, "rows": 5000})
    assert (state, result) == (JobState.CANCELLED, {"stop_reason": "cancelled", "rows_done": 1200})
    assert reason == "Cancelled after 1,200 of 5,000 rows; a cancelled job writes no predictions file."
    state, _result, reason = predict_outcome(job, {"stopped": "budget", "rows_done": 8, "rows": 12})
    assert state == JobState.CANCELLED and reason == "Stopped at its budget of $2.50 (max_cost) after 8 of 12 rows."
    assert predict_outcome(job, {"stopped": "lease lost", "rows_done": 8, "rows": 12}) == (None, {}, "")
    state, result, reason = predict_outcome(job, {"rows": 12, "metrics": None})
    assert state == JobState.SUCCEEDED and result == {"predictions": {"rows": 12, "metrics": None}} and reason == ""
