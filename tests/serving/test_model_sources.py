"""jobs/model_sources: which models an organization can use, how a request names one (foreign ids 404,
malformed references 400 naming the field), and the worker's unpacked-archive cache."""
from __future__ import annotations

import hashlib

import pytest
from django.core.files.storage import default_storage

from core.errors import ApplicationError, NotFound
from jobs import model_sources
from jobs.models import Job, JobKind, JobState

from .predict_helpers import archive, stored_artifact

pytestmark = pytest.mark.django_db


def job_of(tenant, version, *, kind=JobKind.FINETUNE, state=JobState.SUCCEEDED, source=None, name=""):
    return Job.objects.create(organization=tenant.organization, kind=kind, state=state, dataset_version=version,
                              labels=["a", "b"], source_job=source, name=name)


@pytest.fixture
def family(tenant_a, dataset):
    """A fine-tune, its quantization (two archives) and a prune of it, plus a report artifact and a failed job."""
    version = dataset.latest_version
    finetune = job_of(tenant_a, version, name="intents")
    stored_artifact(finetune, "model.zip", archive({"config.json": b"{}"}))
    stored_artifact(finetune, "eval_report.json", b"{}", kind="report")
    quantized = job_of(tenant_a, version, kind=JobKind.QUANTIZE, source=finetune)
    stored_artifact(quantized, "model.zip", archive({"config.json": b"{}", "quantization.json": b"{}"}))
    stored_artifact(quantized, "model-onnx-int8.zip", archive({"config.json": b"{}", "model.int8.onnx": b"x"}))
    pruned = job_of(tenant_a, version, kind=JobKind.PRUNE, source=quantized)
    stored_artifact(pruned, "model.zip", archive({"config.json": b"{}"}))
    failed = job_of(tenant_a, version, state=JobState.FAILED)
    stored_artifact(failed, "model.zip", archive({"config.json": b"{}"}))
    return finetune, quantized, pruned, failed


def test_source_list_holds_every_model_archive_of_succeeded_jobs(tenant_a, family):
    finetune, quantized, pruned, _failed = family
    keys = [s.key for s in model_sources.source_list(organization=tenant_a.organization)]
    assert sorted(keys) == sorted([f"job-{finetune.pk}/model.zip", f"job-{quantized.pk}/model.zip",
                                   f"job-{quantized.pk}/model-onnx-int8.zip", f"job-{pruned.pk}/model.zip"])
    variants = {s.key: s.variant for s in model_sources.source_list(organization=tenant_a.organization)}
    assert variants[f"job-{quantized.pk}/model.zip"] == "torch_int8"
    assert variants[f"job-{quantized.pk}/model-onnx-int8.zip"] == "onnx_int8"
    assert variants[f"job-{finetune.pk}/model.zip"] == "fp32"


def test_variants_of_any_member_is_the_whole_family(tenant_a, tenant_b, family):
    finetune, quantized, pruned, _failed = family
    expected = {f"job-{finetune.pk}/model.zip", f"job-{quantized.pk}/model.zip",
                f"job-{quantized.pk}/model-onnx-int8.zip", f"job-{pruned.pk}/model.zip"}
    for member in (finetune, quantized, pruned):
        assert {s.key for s in model_sources.variants_of(organization=tenant_a.organization, job_id=member.pk)} == expected
    with pytest.raises(NotFound):
        model_sources.variants_of(organization=tenant_b.organization, job_id=finetune.pk)


def test_source_get_names_what_is_wrong(tenant_a, tenant_b, family):
    finetune, quantized, _pruned, failed = family
    org = tenant_a.organization
    assert model_sources.source_get(organization=org, job_id=finetune.pk).artifact == "model.zip"
    onnx = model_sources.source_get(organization=org, job_id=quantized.pk, artifact="model-onnx-int8.zip")
    assert onnx.reference() == {"job_id": quantized.pk, "artifact": "model-onnx-int8.zip"}
    with pytest.raises(NotFound):  # another organization's job
        model_sources.source_get(organization=tenant_b.organization, job_id=finetune.pk)
    with pytest.raises(NotFound, match="model.zip"):  # not a model archive; the message lists the real ones
        model_sources.source_get(organization=org, job_id=finetune.pk, artifact="eval_report.json")
    with pytest.raises(ApplicationError) as failed_job:
        model_sources.source_get(organization=org, job_id=failed.pk)
    assert failed_job.value.code == "model_not_ready" and "model" in failed_job.value.fields
    with pytest.raises(ApplicationError) as both:
        model_sources.source_get(organization=org, job_id=finetune.pk, uploaded_model_id=1, field="models[1]")
    assert "models[1]" in both.value.fields


@pytest.mark.parametrize("value, problem", [
    ("job-1", "must be an object"),
    ([1], "must be an object"),
    ({"job_id": "1"}, "positive integer"),
    ({"job_id": True}, "positive integer"),
    ({"job_id": 0}, "positive integer"),
    ({"job_id": 2**63}, "positive integer"),
    ({"job_id": 1.5}, "positive integer"),
    ({"job_id": 1, "artifact": ""}, "artifact name"),
    ({"job_id": 1, "artifact": "a\x00b"}, "artifact name"),
    ({"job_id": 1, "artifact": "x" * 101}, "artifact name"),
    ({"job_id": 1, "extra": 1}, "unknown key"),
])
def test_parse_reference_refuses_malformed_references(value, problem):
    with pytest.raises(ApplicationError, match=problem) as error:
        model_sources.parse_reference(value, field="model")
    assert "model" in error.value.fields


def test_unpacked_is_content_addressed_and_bounded(tenant_a, family, settings, tmp_path):
    settings.LATHE_SERVING_CACHE_DIR = str(tmp_path / "cache")
    finetune, quantized, pruned, _failed = family
    org = tenant_a.organization
    first = model_sources.unpacked(model_sources.source_get(organization=org, job_id=finetune.pk))
    assert (first / "config.json").read_bytes() == b"{}" and first.name == finetune.artifacts.get(name="model.zip").sha256
    again = model_sources.unpacked(model_sources.source_get(organization=org, job_id=finetune.pk))
    assert again == first
    onnx_source = model_sources.source_get(organization=org, job_id=quantized.pk, artifact="model-onnx-int8.zip")
    one_folder = sum(f.stat().st_size for f in first.rglob("*") if f.is_file())
    settings.LATHE_SERVING_CACHE_BYTES = one_folder + 5  # room for about one folder
    onnx = model_sources.unpacked(onnx_source)
    assert (onnx / "model.int8.onnx").exists()
    assert not first.exists()  # the least recently used went
    assert not list((tmp_path / "cache").glob(".tmp-*"))


def test_a_damaged_archive_leaves_no_folder(tenant_a, dataset, settings, tmp_path):
    settings.LATHE_SERVING_CACHE_DIR = str(tmp_path / "cache")
    job = job_of(tenant_a, dataset.latest_version)
    stored_artifact(job, "model.zip", b"PK\x03\x04 not really a zip")
    source = model_sources.source_get(organization=tenant_a.organization, job_id=job.pk)
    with pytest.raises(Exception):
        model_sources.unpacked(source)
    assert not (tmp_path / "cache" / source.sha256).exists()
    assert not list((tmp_path / "cache").glob(".tmp-*"))


def test_an_archive_whose_bytes_changed_in_storage_is_refused(tenant_a, dataset, settings, tmp_path):
    settings.LATHE_SERVING_CACHE_DIR = str(tmp_path / "cache")
    job = job_of(tenant_a, dataset.latest_version)
    artifact = stored_artifact(job, "model.zip", archive({"config.json": b"{}"}))
    with default_storage.open(artifact.storage_name, "wb") as fh:  # replaced behind the platform's back
        fh.write(archive({"config.json": b'{"model_type": "evil"}'}))
    source = model_sources.source_get(organization=tenant_a.organization, job_id=job.pk)
    with pytest.raises(model_sources.ModelIntegrityError, match="sha256"):
        model_sources.unpacked(source)
    assert not (tmp_path / "cache" / source.sha256).exists()
    assert not list((tmp_path / "cache").glob(".tmp-*"))


def test_an_uploaded_models_stored_archive_is_checked_too(tenant_a, settings, tmp_path):
    """An upload records the sha256 of the repacked archive it keeps, so a worker refuses changed bytes as it
    does for a job's artifact; uploads from before that was recorded are used unchecked, as before."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from registry.models import UploadedModel
    from registry.services import model_upload
    from tenancy.actors import Actor
    from tests.model_archives import tiny_classifier_folder, zip_bytes

    settings.LATHE_SERVING_CACHE_DIR = str(tmp_path / "cache")
    uploaded = SimpleUploadedFile("m.zip", zip_bytes(tiny_classifier_folder(tmp_path / "model")))
    model = model_upload(organization=tenant_a.organization, actor=Actor.for_membership(tenant_a.owner_membership),
                         uploaded=uploaded, name="uploaded")
    with default_storage.open(model.storage_name, "rb") as fh:
        kept = fh.read()
    assert model.stored_sha256 == hashlib.sha256(kept).hexdigest() != model.sha256
    source = model_sources.source_get(organization=tenant_a.organization, uploaded_model_id=model.pk)
    assert source.sha256 == model.stored_sha256 and (model_sources.unpacked(source) / "config.json").exists()

    with default_storage.open(model.storage_name, "wb") as fh:  # replaced behind the platform's back
        fh.write(archive({"config.json": b'{"model_type": "evil"}'}))
    settings.LATHE_SERVING_CACHE_DIR = str(tmp_path / "cache-2")
    with pytest.raises(model_sources.ModelIntegrityError, match="sha256"):
        model_sources.unpacked(source)
    UploadedModel.objects.filter(pk=model.pk).update(stored_sha256="")  # an upload from before
    older = model_sources.source_get(organization=tenant_a.organization, uploaded_model_id=model.pk)
    assert not older.checked and (model_sources.unpacked(older) / "config.json").exists()
