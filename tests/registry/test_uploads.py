"""Uploaded models: a valid archive is kept (validated files only); every
broken one is a 4xx naming the file, tensor or limit, and keeps nothing; an
uploaded model is compressed like a job's model."""
from __future__ import annotations

import io
import os
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from safetensors.torch import load_file, save_file

from registry.models import UploadedModel
from tests.model_archives import DEFAULT_LABELS, edited_config, tiny_classifier_folder, zip_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def model_folder(tmp_path):
    return tiny_classifier_folder(tmp_path / "model")


@pytest.fixture
def client(tenant_a, api_for, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return api_for(tenant_a.key(scopes=["write"]))


def _upload(client, archive: bytes, name="my-model.zip"):
    return client.post("/api/v1/models", {"file": SimpleUploadedFile(name, archive)}, format="multipart")


def _stored_files(settings):
    root = os.path.join(settings.MEDIA_ROOT, "models")
    return [os.path.join(r, f) for r, _d, files in os.walk(root) for f in files]


def test_valid_upload_is_kept_with_what_it_learned(client, model_folder, settings, tenant_a):
    from corpora.limits import storage_used

    response = _upload(client, zip_bytes(model_folder, extra={"my-model/notes.py": b"print('not shipped')"}))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "my-model" and body["model_type"] == "bert" and body["num_layers"] == 2
    assert body["labels"] == list(DEFAULT_LABELS) and body["architecture"] == "BertForSequenceClassification"
    tensors = load_file(str(model_folder / "model.safetensors"))
    assert body["parameter_count"] == sum(t.numel() for t in tensors.values())
    model = UploadedModel.objects.get(pk=body["id"])
    stored = _stored_files(settings)
    assert len(stored) == 1 and storage_used(organization=tenant_a.organization) >= model.size_bytes
    names = set(zipfile.ZipFile(stored[0]).namelist())
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names and "notes.py" not in names
    assert client.get(f"/api/v1/models/{model.pk}").json()["sha256"] == model.sha256


def _broken_weights(folder, drop=None, reshape=None):
    tensors = load_file(str(folder / "model.safetensors"))
    if drop:
        tensors.pop(drop)
    if reshape:
        tensors[reshape] = tensors[reshape][:-1].contiguous()
    out = folder.parent / "broken.safetensors"
    save_file(tensors, str(out), metadata={"format": "pt"})
    return out.read_bytes()


@pytest.mark.parametrize("breakage, expected", [
    (lambda f: b"PK not really a zip", "not a zip archive"),
    (lambda f: zip_bytes(f, extra={"my-model/pytorch_model.bin": b"\x80\x04pickle"}), "pickle-based weights are refused"),
    (lambda f: zip_bytes(f, skip=("config.json",)), "config.json is missing"),
    (lambda f: zip_bytes(f, replace={"config.json": b"{not json"}), "config.json is not valid JSON"),
    (lambda f: zip_bytes(f, replace={"config.json": edited_config(f, auto_map={"AutoModel": "evil.Model"})}), "custom code"),
    (lambda f: zip_bytes(f, replace={"config.json": edited_config(f, architectures=["BertModel"])}), "ForSequenceClassification"),
    (lambda f: zip_bytes(f, replace={"config.json": edited_config(f, id2label={"0": "only"}, label2id={"only": 0})}),
     "fewer than two labels"),
    (lambda f: zip_bytes(f, replace={"config.json": edited_config(f, intermediate_size=128)}),
     "bert.encoder.layer.0.intermediate.dense.bias: shape [64] does not match the config, which implies [128]"),
    (lambda f: zip_bytes(f, replace={"model.safetensors": _broken_weights(f, drop="classifier.weight")}),
     "missing, e.g. classifier.weight"),
    (lambda f: zip_bytes(f, replace={"model.safetensors": _broken_weights(f, reshape="classifier.bias")}),
     "classifier.bias: shape [3]"),
    (lambda f: zip_bytes(f, skip=("model.safetensors",)), "No .safetensors weights"),
    (lambda f: zip_bytes(f, replace={"model.safetensors": b"garbage"}), "not a readable safetensors file"),
    (lambda f: zip_bytes(f, skip=("tokenizer.json", "tokenizer_config.json")), "No tokenizer files"),
    (lambda f: zip_bytes(f, replace={"tokenizer.json": b"{}"}), "tokenizer does not load"),
    (lambda f: zip_bytes(f, extra={"../evil.txt": b"x"}), "leaves the archive's folder"),
])
def test_broken_archives_are_refused_naming_the_problem_and_keep_nothing(client, model_folder, settings, breakage, expected):
    response = _upload(client, breakage(model_folder))
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert expected in error["message"] and error["fields"]["file"]
    assert not UploadedModel.objects.exists() and not _stored_files(settings)


def test_too_large_is_413_naming_the_limit(client, model_folder, settings):
    settings.LATHE_MODEL_MAX_FILE_BYTES = 10_000
    response = _upload(client, zip_bytes(model_folder))
    assert response.status_code == 413 and "the limit is" in response.json()["error"]["message"]
    assert not UploadedModel.objects.exists()


def test_delete_is_refused_while_a_job_uses_the_model(client, api_for, model_folder, settings, tenant_a, dataset, tiny_bert):
    model_id = _upload(client, zip_bytes(model_folder)).json()["id"]
    job = client.post("/api/v1/jobs", {"kind": "quantize", "source_model_id": model_id, "dataset_id": dataset.pk},
                      format="json")
    assert job.status_code == 201, job.content
    assert job.json()["source_model"] == model_id and job.json()["base_model"] is None
    # A member's key may upload but not delete what someone else (or a key) uploaded.
    assert client.delete(f"/api/v1/models/{model_id}").status_code == 403
    admin = api_for(tenant_a.key(scopes=["admin"]))
    refused = admin.delete(f"/api/v1/models/{model_id}")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "model_in_use"
    from jobs.models import Job

    Job.objects.filter(pk=job.json()["id"]).delete()
    assert admin.delete(f"/api/v1/models/{model_id}").status_code == 204
    assert not UploadedModel.objects.exists()


def test_an_uploaded_model_needs_evaluation_data_with_its_labels(client, model_folder, tmp_path, tenant_a, dataset):
    model_id = _upload(client, zip_bytes(model_folder)).json()["id"]
    no_data = client.post("/api/v1/jobs", {"kind": "quantize", "source_model_id": model_id}, format="json")
    assert no_data.status_code == 400 and "dataset_id" in no_data.json()["error"]["fields"]
    other = tiny_classifier_folder(tmp_path / "other", labels=("x", "y"))
    other_id = _upload(client, zip_bytes(other)).json()["id"]
    wrong = client.post("/api/v1/jobs", {"kind": "quantize", "source_model_id": other_id, "dataset_id": dataset.pk}, format="json")
    assert wrong.status_code == 400 and "labels the model was not trained on" in wrong.json()["error"]["message"]
    both = client.post("/api/v1/jobs", {"kind": "quantize", "source_model_id": model_id, "source_job_id": 1,
                                        "dataset_id": dataset.pk}, format="json")
    assert both.status_code == 400 and "exactly one" in both.json()["error"]["message"]


@pytest.mark.django_db(transaction=True)  # a run outlasts a lease: never inside the test's open transaction
def test_an_uploaded_model_is_compressed_by_the_runner(client, model_folder, tenant_a, dataset, fast_jobs):
    """Claimed and run in-process (the worker path without the broker): the
    uploaded archive is the source, the dataset's validation split the data."""
    from jobs import lifecycle, runner
    from jobs.models import JobState

    model_id = _upload(client, zip_bytes(model_folder)).json()["id"]
    job_id = client.post("/api/v1/jobs", {"kind": "prune", "source_model_id": model_id, "dataset_id": dataset.pk,
                                          "prune_method": "neurons", "sparsity": 0.5, "max_accuracy_drop": 100},
                         format="json").json()["id"]
    claimed, token = lifecycle.job_claim(job_id=job_id, worker="test", device_class="cpu")
    assert runner.run_claimed_job(claimed, token) == JobState.SUCCEEDED
    claimed.refresh_from_db()
    report = claimed.result["compression"]
    assert report["pruning"]["intermediate_size_after"] == 32
    assert report["after"]["parameters"] < report["before"]["parameters"]
    archive = b"".join(client.get(f"/api/v1/jobs/{job_id}/artifacts/model.zip").streaming_content)
    assert "model.safetensors" in zipfile.ZipFile(io.BytesIO(archive)).namelist()
