"""The dashboard's batch predictions: the form on a succeeded model's job page and on an uploaded model's page
(a job queued from each, a refusal shown, nothing queued), and a predict job's page: the report (metrics,
per label, confusion matrix picture and table, worst examples, escaped) in the live part too."""
from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from jobs.models import Job, JobKind, JobState
from tenancy.actors import Actor
from tests.model_archives import DEFAULT_LABELS, tiny_classifier_folder, zip_bytes
from workers.serving.predict import build_report

from .predict_helpers import model_job

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    return tiny_classifier_folder(tmp_path_factory.mktemp("predict-dash"))


@pytest.fixture
def page(client, tenant_a, dataset, classifier_dir):
    client.force_login(tenant_a.owner)
    return client, model_job(tenant_a, dataset.latest_version, classifier_dir, labels=DEFAULT_LABELS), dataset


def test_a_succeeded_jobs_page_starts_batch_predictions(page, tenant_a):
    client, source, dataset = page
    slug = tenant_a.organization.slug
    html = client.get(f"/o/{slug}/jobs/{source.pk}").content.decode()
    assert 'data-testid="predict-form"' in html and f'action="/o/{slug}/jobs/{source.pk}/predict"' in html
    assert "Max new tokens" not in html  # a classifier: no chat option
    response = client.post(f"/o/{slug}/jobs/{source.pk}/predict", {"dataset_id": dataset.pk, "chunk_rows": 7})
    job = Job.objects.get(kind=JobKind.PREDICT)
    assert response.status_code == 302 and response["Location"] == f"/o/{slug}/jobs/{job.pk}"
    assert job.spec["model"] == {"job_id": source.pk, "artifact": "model.zip"} and job.spec["chunk_rows"] == 7
    html = client.get(f"/o/{slug}/jobs/{job.pk}").content.decode()
    assert 'data-testid="predict-report"' in html and "The report appears here" in html
    assert 'data-testid="predict-form"' not in html and 'data-testid="compress-form"' not in html


def test_a_refused_form_queues_nothing_and_says_why(page, tenant_a):
    client, source, dataset = page
    slug = tenant_a.organization.slug
    response = client.post(f"/o/{slug}/jobs/{source.pk}/predict", {"dataset_id": dataset.pk, "batch_size": 0},
                           follow=True)
    assert not Job.objects.filter(kind=JobKind.PREDICT).exists()
    assert "greater than or equal to 1" in response.content.decode()
    response = client.post(f"/o/{slug}/jobs/{source.pk}/predict", {"dataset_id": 999999}, follow=True)
    assert not Job.objects.filter(kind=JobKind.PREDICT).exists() and "valid choice" in response.content.decode()


def test_an_uploaded_models_page_starts_batch_predictions(client, tenant_a, dataset, classifier_dir):
    from registry.services import model_upload

    model = model_upload(organization=tenant_a.organization, actor=Actor.for_membership(tenant_a.owner_membership),
                         uploaded=SimpleUploadedFile("m.zip", zip_bytes(classifier_dir)), name="uploaded")
    client.force_login(tenant_a.owner)
    slug = tenant_a.organization.slug
    assert 'data-testid="predict-form"' in client.get(f"/o/{slug}/models/{model.pk}").content.decode()
    response = client.post(f"/o/{slug}/models/{model.pk}/predict", {"dataset_id": dataset.pk})
    job = Job.objects.get(kind=JobKind.PREDICT)
    assert response.status_code == 302 and job.source_model_id == model.pk
    assert job.spec["model"] == {"uploaded_model_id": model.pk}


def test_a_predict_jobs_page_shows_the_report_escaped(page, tenant_a):
    client, source, dataset = page
    labels = ["<b>bold</b>", "plain"]
    outputs = [{"id": "1", "prediction": "plain", "score": 0.9, "scores": {"<b>bold</b>": 0.1, "plain": 0.9},
                "label": "<b>bold</b>", "correct": False},
               {"id": "2", "prediction": "plain", "score": 0.8, "scores": {"<b>bold</b>": 0.2, "plain": 0.8},
                "label": "plain", "correct": True}]
    report = build_report(outputs, family="classifier", labels=labels, limit=5, inputs={"1": "<script>x</script>"})
    report.update(rows=2, resumed_rows=0, predicted_rows=2, rows_per_second=10.0, variant="fp32")
    job = Job.objects.create(organization=tenant_a.organization, kind=JobKind.PREDICT, state=JobState.SUCCEEDED,
                             dataset_version=dataset.latest_version, source_job=source, step=2, total_steps=2,
                             spec={"model": {"job_id": source.pk, "artifact": "model.zip"}},
                             result={"predictions": report})
    slug = tenant_a.organization.slug
    for headers in ({}, {"HTTP_HX_REQUEST": "true"}):  # the page, and the live part htmx polls
        html = client.get(f"/o/{slug}/jobs/{job.pk}", **headers).content.decode()
        assert 'data-testid="predict-metrics"' in html and "0.5000" in html  # accuracy 1 of 2
        assert 'data-testid="predict-confusion"' in html and 'data-testid="predict-worst"' in html
        assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
        assert "<script>x</script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
        assert "2 of 2 rows predicted" in html
        assert 'data-testid="no-training"' not in html
