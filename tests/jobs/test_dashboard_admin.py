"""Jobs on the dashboard (launch form, live page, cancel, downloads) and in the
operators' admin (actions, queue page)."""
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse

from jobs import lifecycle
from jobs.models import Job, JobArtifact, JobMetric, JobState
from tests.dashboard.chart_data import chart_data

pytestmark = pytest.mark.django_db


def launch(client, dataset, **extra):
    return client.post("/o/acme/jobs", {"dataset_id": dataset.pk, "base_model": "tiny-bert", "method": "full", **extra})


def test_launch_form_queues_a_job_and_shows_errors_inline(client, tenant_a, dataset, tiny_bert):
    client.force_login(tenant_a.owner)
    page = client.get("/o/acme/jobs").content.decode()
    assert 'data-testid="launch-form"' in page and "slice" in page and "Tiny BERT" in page
    bad = launch(client, dataset, epochs="0")
    assert bad.status_code == 400 and 'data-field="epochs"' in bad.content.decode() and not Job.objects.exists()
    ok = launch(client, dataset, epochs="2")
    job = Job.objects.get()
    assert ok.status_code == 302 and ok["Location"] == f"/o/acme/jobs/{job.pk}"
    assert job.spec["epochs"] == 2 and job.requested == {"epochs": 2}


def test_job_page_is_live_and_cancellable(client, tenant_a, dataset, tiny_bert):
    client.force_login(tenant_a.owner)
    launch(client, dataset)
    job = Job.objects.get()
    lifecycle.job_claim(job_id=job.pk, worker="w", device_class="cpu")
    Job.objects.filter(pk=job.pk).update(step=5, total_steps=10)
    JobMetric.objects.create(job=job, step=5, epoch=0.5, values={"train_loss": 1.2})
    JobMetric.objects.create(job=job, step=5, epoch=1.0, values={"accuracy": 0.5})
    page = client.get(f"/o/acme/jobs/{job.pk}").content.decode()
    assert 'hx-trigger="every 2s"' in page and 'data-testid="job-chart"' in page
    chart = chart_data(page, "job-chart-data")
    assert {s["key"]: s["points"] for s in chart["series"]} == {"train_loss": [[5, 1.2]], "accuracy": [[5, 0.5]]}
    assert chart["x_max"] == 10 and chart["epochs"] == [{"epoch": 1, "step": 5}]  # a lone evaluation still shows
    partial = client.get(f"/o/acme/jobs/{job.pk}", HTTP_HX_REQUEST="true").content.decode()
    assert partial.lstrip().startswith('<div id="job-live"') and "<html" not in partial and "step 5/10" in partial
    assert client.post(f"/o/acme/jobs/{job.pk}/cancel").status_code == 302
    assert Job.objects.get(pk=job.pk).cancel_requested_at is not None


def test_finished_job_page_stops_polling_and_offers_downloads(client, tenant_a, dataset, tiny_bert, media):
    client.force_login(tenant_a.owner)
    launch(client, dataset)
    job = Job.objects.get()
    Job.objects.filter(pk=job.pk).update(state=JobState.SUCCEEDED)
    stored = default_storage.save(f"jobs/{job.organization_id}/{job.pk}/1/eval_report.json", ContentFile(b'{"ok": true}'))
    JobArtifact.objects.create(job=job, organization=job.organization, name="eval_report.json", kind="report",
                               storage_name=stored, size_bytes=12, sha256="0" * 64)
    page = client.get(f"/o/acme/jobs/{job.pk}").content.decode()
    assert "hx-trigger" not in page and "eval_report.json" in page and "12 B" in page
    download = client.get(f"/o/acme/jobs/{job.pk}/artifacts/eval_report.json")
    assert download.status_code == 200 and b"".join(download.streaming_content) == b'{"ok": true}'
    assert client.get(f"/o/acme/jobs/{job.pk}/artifacts/nope.zip").status_code == 404


def test_list_filters(client, tenant_a, dataset, tiny_bert):
    client.force_login(tenant_a.owner)
    launch(client, dataset)
    launch(client, dataset)
    first = Job.objects.order_by("id").first()
    lifecycle.job_cancel(organization=tenant_a.organization, actor=None, job_id=first.pk)
    page = client.get("/o/acme/jobs?state=cancelled").content.decode()
    assert page.count('class="badge state-cancelled"') == 1 and 'class="badge state-queued"' not in page


@pytest.fixture
def operator(client, make_user):
    client.force_login(make_user(email="ops@lathe.local", is_staff=True, is_superuser=True))
    return client


def test_admin_actions_and_queue_page(operator, tenant_a, dataset, tiny_bert, api_for, django_capture_on_commit_callbacks):
    api = api_for(tenant_a.key(scopes=["write"]))
    ids = [api.post("/api/v1/jobs", {"dataset_id": dataset.pk, "base_model": "tiny-bert"}, format="json").json()["id"] for _ in range(2)]
    url = reverse("admin:jobs_job_changelist")
    assert operator.get(url, {"state__exact": "queued"}).status_code == 200
    before = Job.objects.get(pk=ids[0]).priority  # the plan's
    operator.post(url, {"action": "raise_priority", "_selected_action": [ids[0]]})
    assert Job.objects.get(pk=ids[0]).priority == before - 1
    operator.post(url, {"action": "cancel", "_selected_action": ids})
    assert set(Job.objects.filter(pk__in=ids).values_list("state", flat=True)) == {JobState.CANCELLED}
    with django_capture_on_commit_callbacks(execute=False):
        operator.post(url, {"action": "requeue", "_selected_action": [ids[1]]})
    assert Job.objects.get(pk=ids[1]).state == JobState.QUEUED
    queues = operator.get(reverse("admin:jobs_queues"))
    assert queues.status_code == 200 and "Queues by device class" in queues.content.decode()
    ledger = operator.get(reverse("admin:billing_usagesegment_changelist"))
    assert ledger.status_code == 200
