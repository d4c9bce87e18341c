"""Jobs fixtures: a tiny BERT in the catalog and a small dataset uploaded through
the real service."""
from __future__ import annotations

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from catalog.models import BaseModel, WeightsSource
from tests.tiny_model import SLICE, build_tiny_bert


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture
def tiny_bert(db, tiny_bert_dir):
    return BaseModel.objects.create(slug="tiny-bert", name="Tiny BERT", architecture="bert", source_kind=WeightsSource.PATH,
                                    source=str(tiny_bert_dir), supported_tasks=["text_classification"], default_max_length=32)


def slice_csv(labels: int = 4) -> bytes:
    rows = list(csv.DictReader(SLICE.open(encoding="utf-8")))
    keep = sorted({r["category"] for r in rows})[:labels]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["text", "category"])
    for r in rows:
        if r["category"] in keep:
            writer.writerow([r["text"], r["category"]])
    return out.getvalue().encode()


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.LATHE_CHECKPOINT_ROOT = tmp_path / "checkpoints"
    return tmp_path


@pytest.fixture
def dataset(tenant_a, media):
    from corpora.services import dataset_upload
    from tenancy.actors import Actor

    version = dataset_upload(organization=tenant_a.organization, actor=Actor.for_membership(tenant_a.owner_membership),
                             uploaded=SimpleUploadedFile("slice.csv", slice_csv()), validation_fraction=0.2)
    return version.dataset


@pytest.fixture
def long_dataset(tenant_a, media):
    """All 240 rows (20 labels): with batch 4 and 50 epochs, ~2,700 steps —
    long enough to cancel, kill or freeze a worker mid-run."""
    from corpora.services import dataset_upload
    from tenancy.actors import Actor

    version = dataset_upload(organization=tenant_a.organization, actor=Actor.for_membership(tenant_a.owner_membership),
                             uploaded=SimpleUploadedFile("long.csv", slice_csv(labels=20)), validation_fraction=0.1)
    return version.dataset


@pytest.fixture
def fast_jobs(settings, media):
    """Short heartbeats, leases and checkpoint cadence, so fault tests take seconds.
    The lease is 10 heartbeats: a loaded 2-core machine may delay a beat, not ten."""
    settings.LATHE_JOB_HEARTBEAT_SECONDS = 0.5
    settings.LATHE_JOB_LEASE_SECONDS = 5
    settings.LATHE_CHECKPOINT_EVERY_STEPS = 10
    return settings
