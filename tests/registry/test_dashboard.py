"""The Models pages: upload (errors shown on the form, nothing kept), detail,
'Compress this model' with the data it needs, delete."""
from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from jobs.models import Job
from registry.models import UploadedModel
from tests.model_archives import tiny_classifier_folder, zip_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(client, tenant_a, media):
    client.force_login(tenant_a.owner)
    return client


def test_upload_compress_and_delete_from_the_dashboard(browser, tenant_a, tmp_path, dataset):
    base = f"/o/{tenant_a.organization.slug}/models"
    broken = browser.post(base, {"file": SimpleUploadedFile("m.zip", b"not a zip")})
    assert broken.status_code == 400 and "not a zip archive" in broken.content.decode()
    assert not UploadedModel.objects.exists()

    archive = zip_bytes(tiny_classifier_folder(tmp_path / "m"))
    response = browser.post(base, {"file": SimpleUploadedFile("support-bot.zip", archive), "name": "Support bot"})
    model = UploadedModel.objects.get()
    assert response.status_code == 302 and response["Location"].endswith(f"/models/{model.pk}")
    assert "Support bot" in browser.get(base).content.decode()
    page = browser.get(f"{base}/{model.pk}").content.decode()
    assert 'data-testid="compress-form"' in page and "— the source job's —" not in page  # data must be chosen

    bad = browser.post(f"{base}/{model.pk}/compress", {"kind": "prune", "sparsity": "lots", "dataset_id": dataset.pk})
    assert bad.status_code == 302 and not Job.objects.exists()
    queued = browser.post(f"{base}/{model.pk}/compress", {"kind": "quantize", "max_accuracy_drop": "1",
                                                          "dataset_id": dataset.pk}, follow=True)
    job = Job.objects.get()
    assert job.source_model_id == model.pk and job.kind == "quantize" and job.dataset_version.dataset_id == dataset.pk
    assert f"uploaded model {model.name}" in queued.content.decode()

    refused = browser.post(f"{base}/{model.pk}/delete", follow=True)
    assert "used by" in refused.content.decode() and UploadedModel.objects.exists()
    job.delete()
    browser.post(f"{base}/{model.pk}/delete")
    assert not UploadedModel.objects.exists()
