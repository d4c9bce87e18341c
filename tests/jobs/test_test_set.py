"""A fine-tune's held-out test set (issue 14): attached (another dataset version
of the organization, every row of it) or carved from the train split before
training; scored once by the delivered model and reported next to — and labelled
apart from — the validation split that chose the epoch and the checkpoint."""
from __future__ import annotations

import collections
import csv
import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from corpora.services import dataset_upload
from jobs import lifecycle, runner
from jobs.models import Job, JobState
from tenancy.actors import Actor
from tests.jobs.conftest import slice_csv
from workers.data import carve_test, read_jsonl


def _rows(labels: int = 4) -> list[dict]:
    return [{"text": r["text"], "label": r["category"]} for r in csv.DictReader(io.StringIO(slice_csv(labels).decode()))]


# --- the carving (Django-free) ---------------------------------------------------------

def test_carve_is_stratified_disjoint_and_the_same_every_time():
    rows = _rows(labels=20)
    rest, test = carve_test(rows, 0.2)
    again_rest, again_test = carve_test(rows, 0.2)
    assert (rest, test) == (again_rest, again_test)  # every attempt of a job carves the same rows
    assert sorted(map(json.dumps, rest + test)) == sorted(map(json.dumps, rows))  # nothing lost, nothing doubled
    assert not {r["text"] for r in rest} & {r["text"] for r in test}
    per_label = collections.Counter(r["label"] for r in rows)
    held = collections.Counter(r["label"] for r in test)
    for label, count in per_label.items():
        assert abs(held[label] - round(count * 0.2)) <= 1, (label, held[label], count)
    assert [r for r in rows if r in rest] == rest  # the training order is the input's
    other_rest, _ = carve_test(rows, 0.2, seed=1)
    assert other_rest != rest  # the seed decides which rows


def test_carve_keeps_duplicates_together_and_lone_labels_in_training():
    rows = ([{"text": "same words", "label": "a"}] * 5 + [{"text": f"a {i}", "label": "a"} for i in range(5)]
            + [{"text": "only one", "label": "b"}] * 3)
    for seed in range(20):
        rest, test = carve_test(rows, 0.5, seed=seed)
        texts = [r["text"] for r in test]
        assert texts.count("same words") in (0, 5)  # a text is on one side only
        assert all(r["label"] == "a" for r in test)  # "b" has one distinct text: it stays in training
        assert any(r["label"] == "a" for r in rest)


# --- submission -----------------------------------------------------------------------

@pytest.fixture
def client(tenant_a, api_for):
    return api_for(tenant_a.key(scopes=["write"]))


def _upload(tenant, name: str, content: bytes):
    return dataset_upload(organization=tenant.organization, actor=Actor.for_membership(tenant.owner_membership),
                          uploaded=SimpleUploadedFile(name, content), validation_fraction=0.2).dataset


def _csv(rows: list[dict]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["text", "category"])
    writer.writerows([r["text"], r["label"]] for r in rows)
    return out.getvalue().encode()


@pytest.fixture
def test_dataset(tenant_a, media):
    rows = _rows(labels=4)
    return _upload(tenant_a, "held-out.csv", _csv([{**r, "text": r["text"] + " (held out)"} for r in rows[::3]]))


@pytest.mark.django_db
def test_attached_test_set_is_recorded_and_labelled(client, dataset, tiny_bert, test_dataset):
    response = client.post("/api/v1/jobs", {"dataset_id": dataset.pk, "base_model": "tiny-bert",
                                            "test_dataset_id": test_dataset.pk}, format="json")
    assert response.status_code == 201, response.content
    job = response.json()
    stored = Job.objects.get(pk=job["id"])
    assert stored.test_dataset_version.dataset_id == test_dataset.pk and stored.test_fraction is None
    evaluation = job["evaluation"]
    assert evaluation["selection"]["split"] == "validation" and "Selection split" in evaluation["selection"]["description"]
    assert evaluation["test"]["split"] == "test" and evaluation["test"]["metrics"] is None
    version = stored.test_dataset_version
    assert evaluation["test"]["rows"] == version.train_count + version.validation_count
    assert "held-out v1 (every row)" in evaluation["test"]["description"]
    assert "tested on held-out v1" in stored.events.get().message


@pytest.mark.django_db
def test_a_job_without_a_test_set_reports_only_the_selection_split(client, dataset, tiny_bert):
    response = client.post("/api/v1/jobs", {"dataset_id": dataset.pk, "base_model": "tiny-bert"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["evaluation"]["test"] is None


@pytest.fixture
def other_org_dataset(tenant_b, media):
    return _upload(tenant_b, "theirs.csv", slice_csv())


@pytest.fixture
def foreign_labels_dataset(tenant_a, media):
    rows = _rows(labels=4)
    return _upload(tenant_a, "foreign.csv", _csv([{**r, "label": r["label"] + "-x"} for r in rows]))


@pytest.mark.django_db
@pytest.mark.parametrize("body,field,words", [
    ({"test_fraction": 0.01}, "test_fraction", "0.02"),
    ({"test_fraction": 0.9}, "test_fraction", "0.5"),
    ({"test_fraction": "1e400"}, "test_fraction", ""),
    ({"test_fraction": "lots"}, "test_fraction", ""),
    ({"test_fraction": True}, "test_fraction", ""),
    ({"test_fraction": [0.1]}, "test_fraction", ""),
    ({"test_fraction": "0.1\x00"}, "test_fraction", ""),
    ({"test_dataset_id": 10**12}, "test_dataset_id", "No such dataset"),
    ({"test_dataset_id": "x"}, "test_dataset_id", ""),
    ({"test_dataset_version": 2}, "test_dataset_version", "needs test_dataset_id"),
    ({"test_dataset_id": "{same}"}, "test_dataset_id", "training data itself"),
    ({"test_dataset_id": "{same}", "test_fraction": 0.1}, "test_fraction", "not both"),
    ({"test_dataset_id": "{held}", "test_fraction": 0.1}, "test_fraction", "not both"),
    ({"test_dataset_id": "{held}", "test_dataset_version": 7}, "test_dataset_id", "No such dataset"),
    ({"test_dataset_id": "{theirs}"}, "test_dataset_id", "No such dataset"),  # another organization's id
    ({"test_dataset_id": "{foreign}"}, "test_dataset_id", "labels the training data does not"),
    ({"kind": "quantize", "source_job_id": 1, "test_fraction": 0.1}, "test_fraction", "applies to fine-tunes"),
])
def test_hostile_test_set_requests_name_the_field_and_write_nothing(client, dataset, tiny_bert, test_dataset,
                                                                    other_org_dataset, foreign_labels_dataset,
                                                                    body, field, words):
    ids = {"{same}": dataset.pk, "{held}": test_dataset.pk, "{theirs}": other_org_dataset.pk,
           "{foreign}": foreign_labels_dataset.pk}
    payload = {"dataset_id": dataset.pk, "base_model": "tiny-bert",
               **{k: ids.get(v, v) if isinstance(v, str) else v for k, v in body.items()}}
    response = client.post("/api/v1/jobs", payload, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert field in error["fields"], error
    assert words in error["message"] + " ".join(" ".join(v) for v in error["fields"].values()), error
    assert not Job.objects.exists()


# --- a run --------------------------------------------------------------------------------

def _run(job_id: int) -> Job:
    claimed, token = lifecycle.job_claim(job_id=job_id, worker="test", device_class="cpu")
    assert runner.run_claimed_job(claimed, token) == JobState.SUCCEEDED, Job.objects.get(pk=job_id).failure_reason
    return Job.objects.get(pk=job_id)


@pytest.mark.django_db(transaction=True)
def test_carved_and_attached_test_sets_are_scored_once_after_training(client, fast_jobs, dataset, tiny_bert,
                                                                      test_dataset):
    hyper = {"epochs": 1, "batch_size": 8, "max_length": 32, "refit": False}  # steps = the train split's batches
    carved = client.post("/api/v1/jobs", {"dataset_id": dataset.pk, "base_model": "tiny-bert", "test_fraction": 0.25,
                                          "hyperparameters": hyper}, format="json")
    attached = client.post("/api/v1/jobs", {"dataset_id": dataset.pk, "base_model": "tiny-bert",
                                            "test_dataset_id": test_dataset.pk, "hyperparameters": hyper}, format="json")
    assert carved.status_code == attached.status_code == 201, (carved.content, attached.content)

    job = _run(carved.json()["id"])
    train_rows = read_jsonl(str(_data_folder(job) / "train.jsonl"))
    _, expected_test = carve_test(train_rows, 0.25)
    test = job.result["test_metrics"]
    assert test["rows"] == len(expected_test) > 0
    assert 0 <= test["accuracy"] <= 1 and 0 <= test["macro_f1"] <= 1
    # Fewer training examples than the train split: the carved rows were held out.
    assert job.result["global_step"] == -(-(len(train_rows) - len(expected_test)) // 8)
    shown = client.get(f"/api/v1/jobs/{job.pk}").json()["evaluation"]
    assert shown["test"]["metrics"]["accuracy"] == test["accuracy"] and shown["test"]["rows"] == test["rows"]
    assert shown["selection"]["metrics"] == job.result["best_metrics"]
    report = json.loads(b"".join(client.get(f"/api/v1/jobs/{job.pk}/artifacts/eval_report.json").streaming_content))
    assert report["test"]["accuracy"] == test["accuracy"]

    job = _run(attached.json()["id"])
    version = job.test_dataset_version
    assert job.result["test_metrics"]["rows"] == version.train_count + version.validation_count
    assert job.events.filter(message__startswith="Test split").count() == 1


def _data_folder(job):
    from jobs.staging import job_folder

    return job_folder(job) / "data"


@pytest.mark.django_db
def test_dashboard_launch_form_offers_a_test_set_and_the_job_page_labels_the_splits(tenant_a, client, dataset, tiny_bert,
                                                                                    test_dataset):
    from django.test import Client

    browser = Client()
    browser.force_login(tenant_a.owner)
    slug = tenant_a.organization.slug
    page = browser.get(f"/o/{slug}/jobs").content.decode()
    assert 'name="test_dataset_id"' in page and 'name="test_fraction"' in page
    response = browser.post(f"/o/{slug}/jobs", {"kind": "finetune", "dataset_id": dataset.pk, "base_model": "tiny-bert",
                                                "method": "full", "test_fraction": "15"})
    assert response.status_code == 302, response.content.decode()[:2000]
    job = Job.objects.get()
    assert job.test_fraction == pytest.approx(0.15) and job.test_dataset_version is None
    detail = browser.get(f"/o/{slug}/jobs/{job.pk}").content.decode()
    assert "Validation (selection split)" in detail and "Test (held out)" in detail
    assert "15% of the train split, carved before training" in detail
    refused = browser.post(f"/o/{slug}/jobs", {"kind": "finetune", "dataset_id": dataset.pk, "base_model": "tiny-bert",
                                               "method": "full", "test_fraction": "15", "test_dataset_id": test_dataset.pk})
    assert refused.status_code == 400 and "not both" in refused.content.decode()
    assert Job.objects.count() == 1


# --- a validation set of its own (OpenAI's validation_file) ----------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("body,field,words", [
    ({"validation_dataset_id": "{same}"}, "validation_dataset_id", "training data itself"),
    ({"validation_dataset_id": "{theirs}"}, "validation_dataset_id", "No such dataset"),
    ({"validation_dataset_id": "{foreign}"}, "validation_dataset_id", "labels the training data does not"),
    ({"validation_dataset_id": 10**12}, "validation_dataset_id", "No such dataset"),
    ({"validation_dataset_id": "one"}, "validation_dataset_id", ""),
    ({"validation_dataset_version": 1}, "validation_dataset_version", "needs validation_dataset_id"),
    ({"validation_dataset_id": "{held}", "test_dataset_id": "{held}"}, "test_dataset_id", "is the validation set"),
    ({"kind": "quantize", "source_job_id": 1, "validation_dataset_id": "{held}"}, "validation_dataset_id",
     "applies to fine-tunes"),
])
def test_hostile_validation_set_requests_name_the_field_and_write_nothing(client, dataset, tiny_bert, test_dataset,
                                                                          other_org_dataset, foreign_labels_dataset,
                                                                          body, field, words):
    test_hostile_test_set_requests_name_the_field_and_write_nothing(
        client, dataset, tiny_bert, test_dataset, other_org_dataset, foreign_labels_dataset, body, field, words)


@pytest.mark.django_db(transaction=True)
def test_a_separate_validation_set_validates_and_the_dataset_trains_whole(client, fast_jobs, dataset, tiny_bert,
                                                                          test_dataset):
    response = client.post("/api/v1/jobs", {"dataset_id": dataset.pk, "base_model": "tiny-bert",
                                            "validation_dataset_id": test_dataset.pk,
                                            "hyperparameters": {"epochs": 1, "batch_size": 8, "max_length": 32}},
                           format="json")
    assert response.status_code == 201, response.content
    shown = response.json()
    assert shown["spec"]["refit"] is False  # auto: a validation set the user gave stays theirs to judge by
    assert shown["validation_dataset"] == {"id": test_dataset.pk, "version": 1, "name": "held-out"}
    job = _run(shown["id"])
    version, separate = job.dataset_version, job.validation_dataset_version
    data = _data_folder(job)
    assert len(read_jsonl(str(data / "train.jsonl"))) == version.train_count + version.validation_count
    validation_rows = read_jsonl(str(data / "validation.jsonl"))
    assert len(validation_rows) == separate.train_count + separate.validation_count
    assert all(r["text"].endswith("(held out)") for r in validation_rows)
    assert job.result["global_step"] == -(-(version.train_count + version.validation_count) // 8)
    evaluation = client.get(f"/api/v1/jobs/{job.pk}").json()["evaluation"]
    assert evaluation["selection"]["rows"] == len(validation_rows)
    assert "held-out v1, every row" in evaluation["selection"]["description"]
