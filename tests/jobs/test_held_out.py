"""The rows a fine-tune held out stay held out for its whole family: its compressions that train (distill,
prune with recovery) on the same dataset version leave its carved test split out of their training rows, and
a comparison held_out_of it (evaluate held_out_of_job_id) scores exactly those rows — or every row of an
attached test set."""
from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from corpora.services import dataset_upload
from jobs import staging
from jobs.models import Job, JobKind, JobState
from tenancy.actors import Actor
from tests.jobs.conftest import slice_csv
from workers.data import carve_test, read_jsonl

pytestmark = pytest.mark.django_db


def _job(tenant, version, **fields):
    return Job.objects.create(organization=tenant.organization, state=JobState.SUCCEEDED, dataset_version=version,
                              labels=sorted(version.report["labels"]["counts"]), **fields)


def _upload(tenant, name, labels=4):
    return dataset_upload(organization=tenant.organization, actor=Actor.for_membership(tenant.owner_membership),
                          uploaded=SimpleUploadedFile(name, slice_csv(labels)), validation_fraction=0.2)


def _texts(rows) -> set[str]:
    return {row["text"] for row in rows}


def test_a_distillation_of_a_carving_fine_tune_does_not_train_on_its_test_split(tenant_a, dataset, tmp_path):
    version = dataset.latest_version
    finetune = _job(tenant_a, version, kind=JobKind.FINETUNE, test_fraction=0.3)
    distill = _job(tenant_a, version, kind=JobKind.DISTILL, source_job=finetune)
    prune = _job(tenant_a, version, kind=JobKind.PRUNE, source_job=distill)  # a chain: the fine-tune is still its root

    held = staging.held_out_rows(finetune, tmp_path / "finetune")
    train_file, _validation = staging.fetch_dataset(finetune, tmp_path / "plain")
    expected_rest, expected_test = carve_test(read_jsonl(str(train_file)), 0.3)
    assert held == expected_test and 0 < len(held) < len(expected_rest)
    for derived in (distill, prune):
        trained, _ = staging.fetch_training_rows_of_derived(derived, tmp_path / f"job-{derived.pk}")
        rows = read_jsonl(str(trained))
        assert rows == expected_rest, derived.kind  # the fine-tune's own training rows, in their order
        assert not _texts(rows) & _texts(held)


def test_what_is_not_held_out_is_trained_on_as_before(tenant_a, tenant_b, dataset, tmp_path):
    version = dataset.latest_version
    whole = read_jsonl(str(staging.fetch_dataset(_job(tenant_a, version, kind=JobKind.FINETUNE), tmp_path / "a")[0]))
    plain_root = _job(tenant_a, version, kind=JobKind.FINETUNE)
    carving_root = _job(tenant_a, version, kind=JobKind.FINETUNE, test_fraction=0.3)
    other_version = _upload(tenant_a, "other.csv", labels=4)
    cases = {
        "no test set": _job(tenant_a, version, kind=JobKind.DISTILL, source_job=plain_root),
        "another dataset": _job(tenant_a, other_version, kind=JobKind.DISTILL, source_job=carving_root),
    }
    for case, derived in cases.items():
        trained, _ = staging.fetch_training_rows_of_derived(derived, tmp_path / case.replace(" ", "-"))
        expected = whole if case == "no test set" else read_jsonl(str(staging.fetch_dataset(derived, tmp_path / "o")[0]))
        assert read_jsonl(str(trained)) == expected, case
    assert staging.held_out_rows(plain_root, tmp_path / "plain") is None


def test_an_attached_test_set_is_held_out_whole(tenant_a, dataset, tmp_path):
    version = dataset.latest_version
    test_version = _upload(tenant_a, "test.csv", labels=3)
    finetune = _job(tenant_a, version, kind=JobKind.FINETUNE, test_dataset_version=test_version)
    held = staging.held_out_rows(finetune, tmp_path)
    every_row = []
    for name in (test_version.train_file, test_version.validation_file):
        from django.core.files.storage import default_storage

        with default_storage.open(name, "rb") as fh:
            every_row += [json.loads(line) for line in fh.read().decode().splitlines() if line.strip()]
    assert held == every_row and len(held) == test_version.train_count + test_version.validation_count


def test_a_compression_of_a_refit_fine_tune_is_judged_on_the_rows_it_held_out(tenant_a, dataset, tmp_path):
    """A refit fine-tune trained on its validation split at the end: its compressions are measured (guard,
    before/after) on its held-out rows instead; without a refit, a test set or on other data, nothing changes."""
    version = dataset.latest_version
    refit = {"refit": {"epochs": 3, "train_rows": 40}}
    refit_root = _job(tenant_a, version, kind=JobKind.FINETUNE, test_fraction=0.3, result=refit)
    distill = _job(tenant_a, version, kind=JobKind.DISTILL, source_job=refit_root)
    quantize = _job(tenant_a, version, kind=JobKind.QUANTIZE, source_job=distill)  # a chain: the root decides
    for derived in (distill, quantize):
        path, why = staging.guard_rows_of_derived(derived, tmp_path / f"job-{derived.pk}")
        assert read_jsonl(str(path)) == staging.held_out_rows(refit_root, tmp_path / "root")
        assert why.startswith(f"the 30% test split of job {refit_root.pk}, rows it never trained on") and "refit" in why
    test_version = _upload(tenant_a, "test.csv", labels=3)
    attached_root = _job(tenant_a, version, kind=JobKind.FINETUNE, test_dataset_version=test_version, result=refit)
    path, why = staging.guard_rows_of_derived(_job(tenant_a, version, kind=JobKind.PRUNE, source_job=attached_root),
                                              tmp_path / "attached")
    assert len(read_jsonl(str(path))) == test_version.train_count + test_version.validation_count
    assert "attached test set" in why
    unchanged = {
        "not refit": _job(tenant_a, version, kind=JobKind.DISTILL,
                          source_job=_job(tenant_a, version, kind=JobKind.FINETUNE, test_fraction=0.3)),
        "refit without a test set": _job(tenant_a, version, kind=JobKind.DISTILL,
                                         source_job=_job(tenant_a, version, kind=JobKind.FINETUNE, result=refit)),
        "another dataset": _job(tenant_a, _upload(tenant_a, "other.csv"), kind=JobKind.DISTILL, source_job=refit_root),
    }
    for case, derived in unchanged.items():
        assert staging.guard_rows_of_derived(derived, tmp_path / case.replace(" ", "-")) is None, case
