"""Uploaded files of inputs for batch predictions (POST /api/v1/prediction-inputs): checked row by row at
upload (a hostile table: each a 4xx naming the line or field, nothing kept), used by a predict job through
`inputs_id` — the worker reads the file as uploaded, ids and all, and an unlabelled file gives predictions
without an evaluation — refused when another organization's, kept while a job uses it."""
from __future__ import annotations

import json

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from jobs.models import Job, PredictionInput
from tests.model_archives import DEFAULT_LABELS, tiny_classifier_folder

from .predict_helpers import model_job

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    return tiny_classifier_folder(tmp_path_factory.mktemp("inputs-clf"))


@pytest.fixture
def client(tenant_a):
    from tests.conftest import bearer_client

    return bearer_client(tenant_a.key(scopes=["read", "write"]))


def upload(client, filename: str, content: bytes, **extra):
    return client.post("/api/v1/prediction-inputs", {"file": SimpleUploadedFile(filename, content), **extra},
                       format="multipart")


def stored_files(tenant) -> list[str]:
    folder = f"prediction-inputs/{tenant.organization.pk}"
    if not default_storage.exists(folder):
        return []
    dirs, _files = default_storage.listdir(folder)
    return [d for d in dirs if default_storage.listdir(f"{folder}/{d}")[1]]


def test_a_csv_with_ids_and_no_labels_is_kept_as_uploaded(client, tenant_a, media):
    content = b"id,text\nq-1,When will my card arrive?\nq-2,=HYPERLINK(\"x\") is a question too\n"
    response = upload(client, "questions.csv", content)
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["file_format"], body["task"], body["rows"], body["labelled_rows"]) == ("csv", "text_classification", 2, 0)
    kept = PredictionInput.objects.get(pk=body["id"])
    with default_storage.open(kept.storage_name, "rb") as fh:
        assert fh.read() == content
    listed = client.get("/api/v1/prediction-inputs").json()
    assert [item["id"] for item in listed["results"]] == [body["id"]]


@pytest.mark.parametrize("name, content, task, labelled", [
    ("chats.jsonl", b'{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}\n'
                    b'{"messages": [{"role": "user", "content": "Bye"}]}\n', "chat", 1),
    ("pairs.jsonl", b'{"text_a": "a", "text_b": "b", "label": "yes"}\n', "text_pair_classification", 1),
    ("pairs.csv", b"text_a,text_b\nx,y\n", "text_pair_classification", 0),
    ("tweets.jsonl", '{"text": "@lathe is text, not a command \u2028 really"}\n'.encode(), "text_classification", 0),
])
def test_the_task_is_read_from_the_rows(client, media, name, content, task, labelled):
    response = upload(client, name, content)
    assert response.status_code == 201, response.content
    assert (response.json()["task"], response.json()["labelled_rows"]) == (task, labelled)


@pytest.mark.parametrize("name, content, says, field", [
    ("x.csv", b'id,text\n1,"unterminated\n', "not valid CSV", "file"),
    ("x.csv", b"id,text\n1,hello\x00world\n", "NUL", "file"),
    ("x.csv", b"id,question\n1,hello\n", "text is missing", "text"),
    ("x.csv", b"id,text\n1,caf\xe9\n", "not UTF-8", "file"),
    ("x.csv", b"id,text\n1,a,b\n", "more cells", "file"),
    ("x.csv", b"id,text\n", "no inputs", "file"),
    ("x.csv", b"", "empty", "file"),
    ("x.csv", b"id,text\n1,a\n1,b\n", "more than once", "id"),
    ("x.jsonl", b"[" * 100_000 + b"\n", "nested too deeply", "file"),
    ("x.jsonl", b'{"text": "ok"}\n{"text": 1e400, "x": [}\n', "Line 2", "file"),
    ("x.jsonl", b'["not", "an", "object"]\n', "JSON object", "file"),
    ("x.jsonl", b'{"text": {"deep": 1}}\n', "must be text", "text"),
    ("x.jsonl", b'{"text": "ok"}\n{"messages": "hi"}\n', "text is missing", "text"),
    ("x.jsonl", b'{"messages": [{"role": "robot", "content": "x"}]}\n', "role", "messages"),
    ("x.jsonl", ('{"text": "' + "a" * 100_001 + '"}\n').encode(), "100,000", "text"),
    ("x.exe", b"MZ", ".csv or .jsonl", "file"),
    ("model.zip", b"PK\x03\x04", ".csv or .jsonl", "file"),
])
def test_hostile_files_are_refused_by_line_and_field_and_nothing_is_kept(client, tenant_a, media, name, content,
                                                                        says, field):
    response = upload(client, name, content)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert says in error["message"] and field in error["fields"], error
    assert not PredictionInput.objects.exists() and stored_files(tenant_a) == []


def test_a_file_over_the_plans_limit_is_a_413(client, tenant_a, media, settings):
    settings.LATHE_DATASET_MAX_FILE_BYTES = 100
    response = upload(client, "big.csv", b"id,text\n" + b"1,hello there\n" * 20)
    assert response.status_code == 413 and "file" in response.json()["error"]["fields"]
    assert not PredictionInput.objects.exists()


@pytest.mark.parametrize("extra, status", [({"name": "x" * 201}, 400), ({"name": "a\x00b"}, 400), ({}, 201)])
def test_the_name_is_bounded(client, media, extra, status):
    assert upload(client, "a.csv", b"text\nhello\n", **extra).status_code == status


def test_a_predict_job_reads_an_uploaded_file(client, tenant_a, tenant_b, dataset, classifier_dir, media, tmp_path,
                                              settings):
    from jobs.kind_runners import KIND_RUNNERS
    from workers.reporting import MemoryReporter

    settings.LATHE_SERVING_CACHE_DIR = str(tmp_path / "cache")
    source = model_job(tenant_a, dataset.latest_version, classifier_dir, labels=DEFAULT_LABELS)
    content = b"id,text\nq-1,When will my card arrive?\nq-2,Is there a fee to top up?\nq-3,hello\n"
    inputs = upload(client, "questions.csv", content).json()
    body = {"kind": "predict", "model": {"job_id": source.pk}, "inputs_id": inputs["id"], "chunk_rows": 2}
    quoted = client.post("/api/v1/jobs/quote", body, format="json")
    assert quoted.status_code == 200 and quoted.json()["estimated_seconds"] >= 0, quoted.content
    created = client.post("/api/v1/jobs", body, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["dataset"] is None
    assert created.json()["prediction_input"] == {"id": inputs["id"], "name": "questions.csv", "rows": 3}
    job = Job.objects.get(pk=created.json()["id"])
    assert "questions.csv (uploaded)" in job.events.first().message

    # The worker's side, in process: the file staged as uploaded, every id predicted once, no evaluation.
    runner = KIND_RUNNERS[job.kind]
    folder = tmp_path / "job"
    spec = runner.build_spec(job, folder)
    assert spec.task == "text_classification" and spec.input_file.endswith(".csv")
    report = runner.run(spec, MemoryReporter())
    lines = [json.loads(line) for line in (folder / "output" / f"attempt-{job.attempts}" / "predictions.jsonl")
             .read_text().splitlines()]
    assert [line["id"] for line in lines] == ["q-1", "q-2", "q-3"]
    assert all(line["prediction"] in DEFAULT_LABELS for line in lines)
    assert report["rows"] == 3 and not report.get("accuracy")

    # Another organization cannot use the file; a file in use is kept.
    from tests.conftest import bearer_client

    other = bearer_client(tenant_b.key(scopes=["read", "write"]))
    b_source = model_job(tenant_b, None, classifier_dir, labels=DEFAULT_LABELS)
    foreign = other.post("/api/v1/jobs", {**body, "model": {"job_id": b_source.pk}}, format="json")
    assert foreign.status_code == 404
    assert other.get(f"/api/v1/prediction-inputs/{inputs['id']}").status_code == 404
    assert client.delete(f"/api/v1/prediction-inputs/{inputs['id']}").status_code == 409
    assert PredictionInput.objects.filter(pk=inputs["id"]).exists()


def test_predict_takes_a_dataset_or_a_file_not_both_and_the_file_must_fit_the_model(client, tenant_a, dataset,
                                                                                   classifier_dir, media):
    source = model_job(tenant_a, dataset.latest_version, classifier_dir, labels=DEFAULT_LABELS)
    text = upload(client, "q.csv", b"text\nhello\n").json()
    chats = upload(client, "c.jsonl", b'{"messages": [{"role": "user", "content": "Hi"}]}\n').json()
    model = {"job_id": source.pk}
    cases = [
        ({"inputs_id": text["id"], "dataset_id": dataset.pk}, "inputs_id"),
        ({"inputs_id": chats["id"]}, "model"),  # a classifier cannot answer conversations
        ({"inputs_id": "one"}, "inputs_id"),
        ({}, "dataset_id"),
    ]
    for extra, field in cases:
        response = client.post("/api/v1/jobs", {"kind": "predict", "model": model, **extra}, format="json")
        assert response.status_code == 400 and field in response.json()["error"]["fields"], (extra, response.content)
    assert client.post("/api/v1/jobs", {"kind": "predict", "model": model, "inputs_id": 999999},
                       format="json").status_code == 404
    assert client.post("/api/v1/jobs", {"kind": "finetune", "dataset_id": dataset.pk, "base_model": "x",
                                        "inputs_id": text["id"]}, format="json").status_code == 400
    assert not Job.objects.exclude(pk=source.pk).exists()
    # An unused file can be deleted, with its stored copy.
    kept = PredictionInput.objects.get(pk=text["id"])
    assert client.delete(f"/api/v1/prediction-inputs/{text['id']}").status_code == 204
    assert not default_storage.exists(kept.storage_name)


def test_the_dashboard_form_uploads_and_predicts_in_one_step(client, tenant_a, dataset, classifier_dir, media):
    from django.test import Client

    browser = Client()
    browser.force_login(tenant_a.owner)
    source = model_job(tenant_a, dataset.latest_version, classifier_dir, labels=DEFAULT_LABELS)
    page = browser.get(f"/o/acme/jobs/{source.pk}").content.decode()
    assert 'enctype="multipart/form-data"' in page and 'name="inputs_file"' in page
    response = browser.post(f"/o/acme/jobs/{source.pk}/predict",
                            {"inputs_file": SimpleUploadedFile("q.csv", b"id,text\na,hello\nb,card\n")})
    job = Job.objects.exclude(pk=source.pk).get()
    assert response.status_code == 302 and response["Location"] == f"/o/acme/jobs/{job.pk}"
    assert job.prediction_input.rows == 2 and job.dataset_version is None
    assert "q.csv (uploaded" in browser.get(f"/o/acme/jobs/{job.pk}").content.decode()
    # A broken file: the form says why, nothing is kept.
    bad = browser.post(f"/o/acme/jobs/{source.pk}/predict",
                       {"inputs_file": SimpleUploadedFile("q.csv", b"id,text\n1,\"open\n")}, follow=True)
    assert "not valid CSV" in bad.content.decode()
    assert PredictionInput.objects.count() == 1 and Job.objects.count() == 2


def test_input_files_count_against_the_storage_quota_that_datasets_share(client, tenant_a, media, settings):
    from corpora.limits import storage_used

    content = b"id,text\n" + b"".join(b"q-%d,When will my card arrive?\n" % i for i in range(200))
    first = upload(client, "questions.csv", content)
    assert first.status_code == 201, first.content
    size = PredictionInput.objects.get().size_bytes
    assert size == len(content) and storage_used(organization=tenant_a.organization) == size
    settings.LATHE_STORAGE_QUOTA_BYTES = size + len(content) - 1  # room for almost a second copy
    refused = upload(client, "again.csv", content)
    assert refused.status_code == 403, refused.content
    assert refused.json()["error"]["code"] == "storage_quota_exceeded"
    assert PredictionInput.objects.count() == 1 and len(stored_files(tenant_a)) == 1
