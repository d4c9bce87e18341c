"""/metrics: protected (token or staff), exposition parsed with prometheus_client's own parser, and the
values checked against rows these tests create (computed at scrape time from the database)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from billing.models import StripeEvent
from jobs.models import Job, JobEvent, JobKind, JobState
from tests.jobs.conftest import slice_csv

TOKEN = "scrape-token-0123456789"


@pytest.fixture
def version(tenant_a, settings, tmp_path):
    from corpora.services import dataset_upload
    from tenancy.actors import Actor

    settings.MEDIA_ROOT = str(tmp_path / "media")
    return dataset_upload(organization=tenant_a.organization, actor=Actor.for_membership(tenant_a.owner_membership),
                          uploaded=SimpleUploadedFile("slice.csv", slice_csv()), validation_fraction=0.2)


def job(tenant, version, **fields) -> Job:
    return Job.objects.create(organization=tenant.organization, dataset_version=version, labels=["a", "b"], **fields)


def scrape(token=TOKEN, client=None) -> dict[str, dict[tuple, float]]:
    client = client or Client()
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


@pytest.mark.django_db
def test_hidden_without_a_token_setting(settings, client):
    settings.LATHE_METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("header, status", [
    (None, 401), ("Bearer wrong-token", 403), (f"Basic {TOKEN}", 403), (f"Bearer {TOKEN}x", 403),
    (f"Bearer {TOKEN[:-1]}", 403), ("Bearer ", 403), ("Bearer \u00e9t\u00e9", 403),
])
def test_wrong_or_missing_token_refused(settings, client, header, status):
    settings.LATHE_METRICS_TOKEN = TOKEN
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    response = client.get("/metrics", **extra)
    assert response.status_code == status
    assert b"lathe_" not in response.content


@pytest.mark.django_db
def test_staff_session_reads_it_members_do_not(settings, make_user, tenant_a):
    settings.LATHE_METRICS_TOKEN = ""
    staff = Client()
    staff.force_login(make_user(is_staff=True))
    assert "lathe_queue_depth" in staff.get("/metrics").content.decode()
    member = Client()
    member.force_login(tenant_a.owner)  # an organization owner is not an operator
    assert member.get("/metrics").status_code == 404


@pytest.mark.django_db
def test_write_methods_refused(settings, client):
    settings.LATHE_METRICS_TOKEN = TOKEN
    assert client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405


@pytest.mark.django_db
def test_values_match_the_database(settings, tenant_a, tenant_b, version):
    settings.LATHE_METRICS_TOKEN = TOKEN
    now = timezone.now()
    oldest_age = 600
    for age in (oldest_age, 30, 5):
        job(tenant_a, version, state=JobState.QUEUED, queue="default", queued_at=now - timedelta(seconds=age))
    job(tenant_b, version, state=JobState.QUEUED, queue="gpu", queued_at=now - timedelta(seconds=50))
    for device in ("nvidia-h100", "nvidia-h100", "cpu"):
        job(tenant_a, version, state=JobState.RUNNING, queue="gpu" if device != "cpu" else "default",
            device_class=device, started_at=now)
    done = [job(tenant_a, version, state=JobState.SUCCEEDED, started_at=now - timedelta(seconds=s + 100),
                finished_at=now - timedelta(seconds=100)) for s in (40, 20)]
    job(tenant_b, version, state=JobState.FAILED, kind=JobKind.QUANTIZE)
    # Reaper events, as jobs.lifecycle._take_over writes them.
    JobEvent.objects.create(job=done[0], level="warning", message="Worker lost (no heartbeat since 2026-01-01 "
                            "00:00:00 UTC). Re-queued to resume from the last checkpoint.")
    JobEvent.objects.create(job=done[0], level="warning", message="Worker lost (no heartbeat). Re-queued to resume "
                            "from the last checkpoint. 2 usage segment(s) after the last checkpoint are not billed.")
    JobEvent.objects.create(job=done[1], level="error", message="Worker lost (no progress for 25 min at step 9 "
                            "(limit 20 min: 100 × its 0.10 s step time, at least 20 min)). Failed: attempts exhausted "
                            "after lost workers.")
    JobEvent.objects.create(job=done[1], message="Job succeeded.")  # not a reaper action
    for n, status in enumerate(("processed", "processed", "failed", "ignored")):
        StripeEvent.objects.create(stripe_id=f"evt_{n}", type="invoice.paid", created=now, payload={}, status=status)

    samples = scrape()

    depth = samples["lathe_queue_depth"]
    assert depth[(("queue", "default"),)] == Job.objects.filter(state="queued", queue="default").count() == 3
    assert depth[(("queue", "gpu"),)] == 1
    age = samples["lathe_queue_oldest_age_seconds"][(("queue", "default"),)]
    assert oldest_age <= age < oldest_age + 60
    assert 50 <= samples["lathe_queue_oldest_age_seconds"][(("queue", "gpu"),)] < 110

    jobs = samples["lathe_jobs"]
    assert jobs[(("kind", "finetune"), ("state", "queued"))] == 4
    assert jobs[(("kind", "finetune"), ("state", "running"))] == 3
    assert jobs[(("kind", "finetune"), ("state", "succeeded"))] == 2
    assert jobs[(("kind", "quantize"), ("state", "failed"))] == 1
    assert sum(jobs.values()) == Job.objects.count()

    running = samples["lathe_jobs_running"]
    assert running[(("device_class", "nvidia-h100"), ("queue", "gpu"))] == 2
    assert running[(("device_class", "cpu"), ("queue", "default"))] == 1

    key = (("kind", "finetune"), ("state", "succeeded"))
    assert samples["lathe_job_duration_seconds_count"][key] == 2
    assert samples["lathe_job_duration_seconds_sum"][key] == pytest.approx(60, abs=0.01)

    assert samples["lathe_lease_losses_total"][(("cause", "lease_expired"),)] == 2
    assert samples["lathe_lease_losses_total"][(("cause", "stalled"),)] == 1
    actions = samples["lathe_reaper_actions_total"]
    assert actions[(("action", "requeued"),)] == 2
    assert actions[(("action", "failed"),)] == 1
    assert actions[(("action", "cancelled"),)] == 0

    webhooks = samples["lathe_stripe_events"]
    assert webhooks[(("status", "processed"),)] == 2
    assert webhooks[(("status", "failed"),)] == 1
    assert webhooks[(("status", "received"),)] == 0

    # Computed per scrape: a job leaving the queue shows at once, in any process.
    Job.objects.filter(state="queued", queue="default").order_by("queued_at").first().delete()
    after = scrape()
    assert after["lathe_queue_depth"][(("queue", "default"),)] == 2
    assert after["lathe_queue_oldest_age_seconds"][(("queue", "default"),)] < 60


@pytest.mark.django_db
def test_meter_export_lag_and_failures(settings, tenant_a, version):
    from billing.models import ExportStatus, LedgerEntry, Plan

    settings.LATHE_METRICS_TOKEN = TOKEN
    assert scrape()["lathe_meter_export_lag_seconds"][()] == 0
    now = timezone.now()
    owner = job(tenant_a, version, state=JobState.SUCCEEDED)
    plan = Plan.objects.first()
    common = dict(organization=tenant_a.organization, job=owner, attempt=1, plan=plan, device_class="cpu",
                  seconds=10, usd_per_second=0, amount_micros=0, period_start=now, period_end=now,
                  usage_started_at=now, usage_ended_at=now)
    entries = [LedgerEntry.objects.create(**common, export_status=status, export_attempts=attempts, export_error=error)
               for status, attempts, error in ((ExportStatus.PENDING, 0, ""), (ExportStatus.PENDING, 2, "timeout"),
                                               (ExportStatus.SENT, 1, ""), (ExportStatus.TOO_OLD, 5, "too old"))]
    LedgerEntry.objects.filter(pk=entries[0].pk).update(created_at=now - timedelta(seconds=900))

    samples = scrape()
    assert samples["lathe_meter_export_pending"][()] == 2
    assert samples["lathe_meter_export_failing"][()] == 1
    assert 900 <= samples["lathe_meter_export_lag_seconds"][()] < 960
    by_status = samples["lathe_ledger_entries"]
    assert by_status[(("export_status", "sent"),)] == 1
    assert by_status[(("export_status", "too_old"),)] == 1
    assert by_status[(("export_status", "pending"),)] == 2
