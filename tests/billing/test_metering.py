"""billing.metering: the one call jobs record usage through, the exclusion of
work lost with a worker after the checkpoint the next attempt resumes from, and
the reads jobs and the dashboard make. Jobs' side of the same rules (the
lease, the reaper) is tested in tests/jobs/test_lifecycle.py and
tests/billing/test_ledger.py."""
from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from billing import ledger, metering
from billing.models import LedgerEntry, PlanRate, UsageExclusion, UsageSegment
from jobs.models import Job, JobKind, JobState

pytestmark = pytest.mark.django_db


def _job(tenant, dataset, base_model, *, state=JobState.RUNNING, attempts=1, token=None) -> Job:
    return Job.objects.create(organization=tenant.organization, kind=JobKind.FINETUNE, state=state, attempts=attempts,
                              lease_token=token, dataset_version=dataset.latest_version, base_model=base_model,
                              labels=["a", "b"])


def _record(job, token, start, end, *, attempt=1):
    return metering.record_segment(job=job, lease_token=token, attempt=attempt, device_class="cpu", device_count=1,
                                   started_at=start, ended_at=end)


def test_a_retried_interval_is_never_billed_twice(tenant_a, dataset, tiny_bert):
    """A heartbeat whose commit answer was lost sends its interval again, later
    extended: only the part not yet covered by this lease is metered."""
    token = uuid.uuid4()
    job = _job(tenant_a, dataset, tiny_bert, token=token)
    start = timezone.now() - timedelta(minutes=1)
    first = _record(job, token, start, start + timedelta(seconds=10))
    again = _record(job, token, start, start + timedelta(seconds=10))      # the same beat, retried
    longer = _record(job, token, start, start + timedelta(seconds=15))     # retried by the next beat
    assert [s.seconds for s in (first, again, longer)] == [Decimal("10.000"), Decimal("0.000"), Decimal("5.000")]
    assert longer.started_at == start + timedelta(seconds=10) and longer.ended_at == start + timedelta(seconds=15)
    assert metering.job_seconds(job=job) == Decimal("15.000")
    # Another lease (the next attempt) is metered from its own start.
    second_token = uuid.uuid4()
    resumed = _record(job, second_token, start + timedelta(seconds=5), start + timedelta(seconds=25), attempt=2)
    assert resumed.seconds == Decimal("20.000") and resumed.attempt == 2 and resumed.organization_id == job.organization_id


@pytest.mark.django_db(transaction=True)
def test_record_segment_outside_the_lease_transaction_is_refused(tenant_a, dataset, tiny_bert):
    """Metering belongs in the transaction that extends the lease (so a
    fenced-off worker bills nothing): called on its own, it refuses."""
    token = uuid.uuid4()
    job = _job(tenant_a, dataset, tiny_bert, token=token)
    now = timezone.now()
    with pytest.raises(RuntimeError, match="transaction that extends the job's lease"):
        _record(job, token, now - timedelta(seconds=3), now)
    assert not UsageSegment.objects.exists()


def test_lost_work_after_the_resume_point_is_excluded(tenant_a, dataset, tiny_bert):
    """Segments that ended after `after` (the resume checkpoint's time, which
    jobs passes in) are excluded; those before, other attempts', rolled-up and
    already excluded ones are left alone."""
    token = uuid.uuid4()
    job = _job(tenant_a, dataset, tiny_bert, token=token, attempts=2)
    resume_at = timezone.now() - timedelta(minutes=5)
    kept = _record(job, token, resume_at - timedelta(seconds=30), resume_at, attempt=2)  # ends exactly at the checkpoint
    lost = [_record(job, token, resume_at, resume_at + timedelta(seconds=20), attempt=2),
            _record(job, token, resume_at + timedelta(seconds=20), resume_at + timedelta(seconds=40), attempt=2)]
    earlier_attempt = _record(job, uuid.uuid4(), resume_at, resume_at + timedelta(seconds=60), attempt=1)
    assert metering.exclude_lost_work(job=job, attempt=2, after=resume_at, reason="worker lost") == 2
    excluded = set(UsageExclusion.objects.values_list("segment_id", flat=True))
    assert excluded == {s.pk for s in lost}
    assert kept.pk not in excluded and earlier_attempt.pk not in excluded
    assert metering.exclude_lost_work(job=job, attempt=2, after=resume_at, reason="again") == 0  # each once
    # No checkpoint at all: the whole attempt is redone, so none of it is billed (rolled-up usage stays billed).
    Job.objects.filter(pk=job.pk).update(state=JobState.SUCCEEDED, lease_token=None)
    ledger.rollup_usage()
    late = _record(job, token, resume_at + timedelta(seconds=40), resume_at + timedelta(seconds=50), attempt=1)
    assert metering.exclude_lost_work(job=job, attempt=1, after=None, reason="worker lost") == 1
    assert UsageExclusion.objects.filter(segment=late).exists()
    assert not UsageExclusion.objects.filter(segment=earlier_attempt).exists()  # it was in the ledger already


def test_reads_split_billed_excluded_and_running(tenant_a, dataset, tiny_bert):
    token = uuid.uuid4()
    job = _job(tenant_a, dataset, tiny_bert, token=token, attempts=2)
    start = timezone.now() - timedelta(minutes=3)
    _record(job, uuid.uuid4(), start, start + timedelta(seconds=30))                        # attempt 1: billed
    lost = _record(job, uuid.uuid4(), start + timedelta(seconds=30), start + timedelta(seconds=42))
    UsageExclusion.objects.create(segment=lost, reason="worker lost")                       # attempt 1: not billed
    _record(job, token, start + timedelta(seconds=42), start + timedelta(seconds=49), attempt=2)  # running
    row = metering.with_job_usage(Job.objects.filter(pk=job.pk)).values(
        "billed_seconds", "excluded_seconds", "running_seconds").get()
    assert row == {"billed_seconds": Decimal("37"), "excluded_seconds": Decimal("12"), "running_seconds": Decimal("7")}
    assert metering.open_attempt_usage(organization=tenant_a.organization) == {job.pk: 7.0}
    assert metering.job_seconds(job=job) == Decimal("49")
    # What the job cost so far: billable usage at the given rate (the ledger's amounts once rolled up).
    assert metering.job_spent_micros(job=job, usd_per_second=Decimal("0.01")) == 370_000
    Job.objects.filter(pk=job.pk).update(state=JobState.SUCCEEDED, lease_token=None)
    PlanRate.objects.filter(plan__slug="free", device_class="cpu").update(usd_per_second=Decimal("0.02"))
    ledger.rollup_usage()
    assert LedgerEntry.objects.filter(job=job, billable=True).count() == 2
    assert metering.job_spent_micros(job=job, usd_per_second=Decimal("0.01")) == 740_000  # priced by the ledger now
    assert metering.open_attempt_usage(organization=tenant_a.organization) == {}


def test_migrations_are_in_step_with_the_models():
    """The state-only move (billing 0003, jobs 0008) leaves nothing for makemigrations to do."""
    call_command("makemigrations", "billing", "jobs", "--check", "--dry-run", verbosity=0)


@pytest.mark.django_db(transaction=True)
def test_the_move_keeps_rows_and_the_content_type(tenant_a, dataset, tiny_bert):
    """From the state before the move (the model in jobs), forwards: the same
    table, its rows and exclusions, now billing's; the content type (and with
    it operators' permissions) follows the model."""
    before = [("billing", "0002_seed_plans"), ("jobs", "0007_job_progress_at_step_seconds")]
    latest = [("billing", "0003_usagesegment_from_jobs"), ("jobs", "0008_usagesegment_to_billing")]
    job = _job(tenant_a, dataset, tiny_bert, state=JobState.SUCCEEDED)
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    ContentType = old.get_model("contenttypes", "ContentType")
    ContentType.objects.filter(model="usagesegment").delete()
    content_type = ContentType.objects.create(app_label="jobs", model="usagesegment")
    now = timezone.now()
    segment = old.get_model("jobs", "UsageSegment").objects.create(
        organization_id=tenant_a.organization.pk, job_id=job.pk, attempt=1, lease_token=uuid.uuid4(), device_class="cpu",
        device_count=1, started_at=now - timedelta(seconds=9), ended_at=now, seconds=Decimal("9"))
    old.get_model("billing", "UsageExclusion").objects.create(segment_id=segment.pk, reason="worker lost")

    executor = MigrationExecutor(connection)
    executor.migrate(latest)
    # Going back unapplied every later migration (and the apps depending on jobs): apply them all again, so the
    # database is whole for the tests after this one.
    MigrationExecutor(connection).migrate(executor.loader.graph.leaf_nodes())
    moved = UsageSegment.objects.get(pk=segment.pk)
    assert moved.seconds == Decimal("9.000") and moved.job_id == job.pk and moved.exclusion.reason == "worker lost"
    from django.contrib.contenttypes.models import ContentType as CurrentContentType

    CurrentContentType.objects.clear_cache()
    assert CurrentContentType.objects.get(pk=content_type.pk).app_label == "billing"
