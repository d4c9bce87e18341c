"""The ledger and its export to Stripe's meter, through the real SDK and the
stand-in: every segment lands in exactly one ledger entry; every billable
micro-dollar reaches Stripe exactly once — through timeouts, 500s and a crash
between sending and marking sent; too-old usage is flagged; reconciliation
catches a mismatch."""
from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.db.models import Sum
from django.utils import timezone
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from billing import ledger
from billing.models import BillingAccount, ExportStatus, LedgerEntry, Reconciliation, UsageExclusion, UsageSegment
from billing.services import account_for, amount_micros
from jobs.models import Job, JobKind, JobState

pytestmark = pytest.mark.django_db


@pytest.fixture
def metered(tenant_a, synced_pro, stripe_standin):
    """Organization A subscribed to Pro (as the webhooks would leave it)."""
    account = account_for(organization=tenant_a.organization)
    now = timezone.now()
    BillingAccount.objects.filter(pk=account.pk).update(
        plan=synced_pro, stripe_customer_id="cus_standin_a", stripe_subscription_id="sub_a", status="active",
        current_period_start=now - timedelta(days=1), current_period_end=now + timedelta(days=29))
    return account


def _job(tenant, dataset, base_model, *, state=JobState.SUCCEEDED, attempts=1) -> Job:
    return Job.objects.create(organization=tenant.organization, kind=JobKind.FINETUNE, state=state, attempts=attempts,
                              dataset_version=dataset.latest_version, base_model=base_model, labels=["a", "b"])


def _segment(job, *, seconds, attempt=1, device="cpu", ended=None, token=None) -> UsageSegment:
    ended = ended or timezone.now() - timedelta(minutes=5)
    return UsageSegment.objects.create(organization=job.organization, job=job, attempt=attempt, lease_token=token or uuid.uuid4(),
                                       device_class=device, device_count=1, started_at=ended - timedelta(seconds=float(seconds)),
                                       ended_at=ended, seconds=Decimal(str(seconds)))


def test_rollup_prices_each_attempt_once_and_waits_for_running_attempts(metered, tenant_a, dataset, tiny_bert):
    done = _job(tenant_a, dataset, tiny_bert)
    for s in (10, 10, 4.5):
        _segment(done, seconds=s, device="nvidia-h100")
    running_token = uuid.uuid4()
    running = _job(tenant_a, dataset, tiny_bert, state=JobState.RUNNING)
    Job.objects.filter(pk=running.pk).update(lease_token=running_token)
    _segment(running, seconds=10, token=running_token)
    entries = ledger.rollup_usage()
    assert len(entries) == 1 and entries[0].job_id == done.pk
    entry = entries[0]
    assert entry.seconds == Decimal("24.5") and entry.usd_per_second == Decimal("0.000972")
    assert entry.amount_micros == 23814  # 24.5 s × $0.000972
    assert entry.export_status == ExportStatus.PENDING and entry.stripe_customer_id == "cus_standin_a"
    assert UsageSegment.objects.filter(ledger_entry=entry).count() == 3
    assert ledger.rollup_usage() == []  # nothing twice
    assert UsageSegment.objects.filter(job=running, ledger_entry__isnull=True).count() == 1


def test_timeout_then_retry_sends_one_event(metered, tenant_a, dataset, tiny_bert, stripe_standin):
    _segment(_job(tenant_a, dataset, tiny_bert), seconds=100)
    entry = ledger.rollup_usage()[0]
    stripe_standin.state.slow_meter_events = 1  # Stripe stores it, the answer comes after our timeout
    assert ledger.export_one(entry.pk) == ExportStatus.PENDING
    entry.refresh_from_db()
    assert entry.export_attempts == 1 and ("timeout" in entry.export_error.lower() or "timed out" in entry.export_error.lower())
    assert ledger.export_one(entry.pk) == ExportStatus.SENT  # the same idempotency key: Stripe replays its answer
    assert len(stripe_standin.state.meter_events) == 1
    assert stripe_standin.state.meter_total("cus_standin_a") == entry.amount_micros


def test_a_crash_between_sending_and_marking_sent_does_not_bill_twice(metered, tenant_a, dataset, tiny_bert, stripe_standin):
    _segment(_job(tenant_a, dataset, tiny_bert), seconds=50, device="nvidia-h100")
    entry = ledger.rollup_usage()[0]

    def crash(_entry):
        raise SystemExit("worker killed after Stripe answered")

    with pytest.raises(SystemExit):
        ledger.export_one(entry.pk, after_send=crash)
    entry.refresh_from_db()
    assert entry.export_status == ExportStatus.PENDING  # our write never happened
    stripe_standin.state.idempotent.clear()  # past the idempotency window: Stripe answers 'identifier exists'
    assert ledger.export_one(entry.pk) == ExportStatus.SENT
    entry.refresh_from_db()
    assert "duplicate identifier" in entry.export_error
    assert list(stripe_standin.state.meter_events) == [entry.meter_identifier]


def test_stripe_errors_keep_the_entry_pending_for_the_sweeper(metered, tenant_a, dataset, tiny_bert, stripe_standin):
    _segment(_job(tenant_a, dataset, tiny_bert), seconds=20)
    ledger.rollup_usage()
    stripe_standin.state.fail_meter_events = 1
    assert ledger.export_pending() == {ExportStatus.PENDING: 1}
    assert ledger.export_pending() == {ExportStatus.SENT: 1}
    assert not LedgerEntry.objects.filter(export_status=ExportStatus.PENDING).exists()


def test_usage_too_old_for_stripe_is_flagged_not_sent(metered, tenant_a, dataset, tiny_bert, stripe_standin):
    job = _job(tenant_a, dataset, tiny_bert)
    _segment(job, seconds=30, ended=timezone.now() - timedelta(days=40))
    entry = ledger.rollup_usage()[0]
    assert ledger.export_one(entry.pk) == ExportStatus.TOO_OLD
    entry.refresh_from_db()
    assert "by hand" in entry.export_error and not stripe_standin.state.meter_events


def test_without_stripe_the_ledger_still_prices_usage(tenant_a, dataset, tiny_bert, settings):
    settings.STRIPE_SECRET_KEY = ""
    _segment(_job(tenant_a, dataset, tiny_bert), seconds=1000)
    entry = ledger.rollup_usage()[0]
    assert entry.export_status == ExportStatus.NOT_NEEDED and entry.amount_micros == 20000  # 1000 s × $0.00002
    assert ledger.export_pending() == {}


def test_reconciliation_matches_and_flags_a_mismatch(metered, tenant_a, dataset, tiny_bert, stripe_standin, settings):
    settings.ADMINS = [("Operators", "ops@example.com")]
    _segment(_job(tenant_a, dataset, tiny_bert), seconds=200, device="nvidia-h100")
    _segment(_job(tenant_a, dataset, tiny_bert), seconds=100, device="nvidia-h100")
    ledger.rollup_usage()
    ledger.export_pending()
    period_end = LedgerEntry.objects.first().period_end
    results = ledger.reconcile_closed_periods(now=period_end + timedelta(hours=2))
    assert len(results) == 1 and results[0].matches and results[0].local_micros == results[0].stripe_micros == 291600
    Reconciliation.objects.all().delete()
    stripe_standin.state.meter_events.popitem()  # Stripe lost one
    mail.outbox.clear()
    results = ledger.reconcile_closed_periods(now=period_end + timedelta(hours=2))
    assert not results[0].matches and "difference" in results[0].note
    assert any("reconciliation mismatch" in m.subject for m in mail.outbox)


def test_lost_worker_usage_after_the_last_checkpoint_is_not_billed(metered, tenant_a, dataset, tiny_bert):
    from jobs.models import JobCheckpoint
    from jobs.lifecycle import reap_expired_leases

    token = uuid.uuid4()
    job = _job(tenant_a, dataset, tiny_bert, state=JobState.RUNNING)
    Job.objects.filter(pk=job.pk).update(lease_token=token, lease_expires_at=timezone.now() - timedelta(seconds=1),
                                         heartbeat_at=timezone.now() - timedelta(minutes=2), max_attempts=3)
    before = _segment(job, seconds=10, token=token, ended=timezone.now() - timedelta(minutes=4))
    JobCheckpoint.objects.create(job=job, attempt=1, step=10, path="x", is_best=False)
    after = _segment(job, seconds=10, token=token, ended=timezone.now() + timedelta(seconds=5))
    assert reap_expired_leases()["requeued"] == [job.pk]
    assert UsageExclusion.objects.filter(segment=after).exists() and not UsageExclusion.objects.filter(segment=before).exists()
    entries = {e.billable: e for e in ledger.rollup_usage()}
    assert entries[True].seconds == Decimal("10") and entries[False].amount_micros == 0
    assert entries[False].export_status == ExportStatus.NOT_NEEDED and "worker lost" in entries[False].note


DEVICES = ["cpu", "nvidia-h100", "nvidia-a100", "nvidia-l4"]


@hypothesis_settings(max_examples=25, deadline=None, derandomize=True, database=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(segments=st.lists(st.tuples(st.sampled_from(DEVICES), st.decimals(min_value="0.001", max_value="5000", places=3),
                                   st.integers(min_value=0, max_value=2), st.booleans()), min_size=1, max_size=25),
       faults=st.lists(st.sampled_from(["ok", "slow", "fail", "crash"]), max_size=8))
def test_property_ledger_total_equals_exported_total_with_no_second_twice(metered, tenant_a, dataset, tiny_bert,
                                                                          stripe_standin, segments, faults):
    # Hypothesis runs many examples in one test: start each from an empty ledger.
    UsageSegment.objects.all().update(ledger_entry=None)
    UsageExclusion.objects.all().delete()
    UsageSegment.objects.all().delete()
    LedgerEntry.objects.all().delete()
    Job.objects.all().delete()
    stripe_standin.state.meter_events.clear()
    stripe_standin.state.idempotent.clear()
    jobs = [_job(tenant_a, dataset, tiny_bert) for _ in range(3)]
    made = []
    for device, seconds, which, excluded in segments:
        segment = _segment(jobs[which], seconds=seconds, device=device)
        if excluded:
            UsageExclusion.objects.create(segment=segment, reason="worker lost")
        made.append(segment)
    # Roll up and export through faults until nothing is pending.
    ledger.rollup_usage()
    for fault in faults:
        pending = list(LedgerEntry.objects.filter(export_status=ExportStatus.PENDING).values_list("pk", flat=True)[:1])
        if not pending:
            break
        stripe_standin.state.slow_meter_events = stripe_standin.state.fail_meter_events = 0  # one fault at a time
        if fault == "slow":
            stripe_standin.state.slow_meter_events = 1
        elif fault == "fail":
            stripe_standin.state.fail_meter_events = 1
        if fault == "crash" and LedgerEntry.objects.get(pk=pending[0]).amount_micros > 0:  # $0 rows send nothing
            with pytest.raises(SystemExit):
                ledger.export_one(pending[0], after_send=lambda e: (_ for _ in ()).throw(SystemExit()))
        else:
            ledger.export_one(pending[0])
    stripe_standin.state.slow_meter_events = stripe_standin.state.fail_meter_events = 0
    for _ in range(3):
        ledger.export_pending()
    assert not LedgerEntry.objects.filter(export_status=ExportStatus.PENDING).exists()
    # Every segment in exactly one entry; seconds preserved; money equal on both sides.
    assert not UsageSegment.objects.filter(ledger_entry__isnull=True).exists()
    assert LedgerEntry.objects.aggregate(s=Sum("seconds"))["s"] == sum(s.seconds for s in made)
    billable = LedgerEntry.objects.filter(billable=True).aggregate(m=Sum("amount_micros"))["m"] or 0
    assert stripe_standin.state.meter_total("cus_standin_a") == billable
    assert len(stripe_standin.state.meter_events) == LedgerEntry.objects.filter(billable=True, amount_micros__gt=0).count()
    # And that money is the sum, per job and device, of the billable seconds at the plan's rates.
    rates = {d: metered.plan.__class__.objects.get(pk=metered.plan_id).rate_for(d) for d in DEVICES}
    by_group: dict = {}
    for segment in made:
        if not UsageExclusion.objects.filter(segment=segment).exists():
            key = (segment.job_id, segment.device_class)
            by_group[key] = by_group.get(key, Decimal(0)) + segment.seconds
    assert billable == sum(amount_micros(seconds=s, device_count=1, usd_per_second=rates[d]) for (_j, d), s in by_group.items())


def test_lost_work_after_a_best_save_is_not_billed_when_the_resume_checkpoint_is_earlier(metered, tenant_a, dataset, tiny_bert):
    """The epoch-end step checkpoint was skipped as 'recent', but the best model
    was saved at that step: the next attempt resumes from the earlier step
    checkpoint, so everything after *that* is redone and must not be billed."""
    from jobs.models import JobCheckpoint
    from jobs.lifecycle import reap_expired_leases

    token = uuid.uuid4()
    job = _job(tenant_a, dataset, tiny_bert, state=JobState.RUNNING)
    Job.objects.filter(pk=job.pk).update(lease_token=token, lease_expires_at=timezone.now() - timedelta(seconds=1),
                                         heartbeat_at=timezone.now() - timedelta(minutes=2), max_attempts=3)
    start = timezone.now() - timedelta(minutes=10)
    kept = _segment(job, seconds=60, token=token, ended=start + timedelta(seconds=60))
    step = JobCheckpoint.objects.create(job=job, attempt=1, step=200, path="step-0000200", is_best=False)
    redone = _segment(job, seconds=60, token=token, ended=start + timedelta(seconds=120))
    best = JobCheckpoint.objects.create(job=job, attempt=1, step=250, path="best", is_best=True)
    after = _segment(job, seconds=60, token=token, ended=start + timedelta(seconds=180))
    JobCheckpoint.objects.filter(pk=step.pk).update(created_at=start + timedelta(seconds=60))
    JobCheckpoint.objects.filter(pk=best.pk).update(created_at=start + timedelta(seconds=120))
    assert reap_expired_leases()["requeued"] == [job.pk]
    assert {s.pk for s in UsageSegment.objects.filter(job=job, exclusion__isnull=False)} == {redone.pk, after.pk}
    assert not UsageExclusion.objects.filter(segment=kept).exists()


@hypothesis_settings(max_examples=30, deadline=None, derandomize=True, database=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(timeline=st.lists(st.tuples(st.sampled_from(["beat", "beat", "step checkpoint", "best save"]),
                                   st.integers(min_value=1, max_value=120)), min_size=1, max_size=20))
def test_property_a_lost_attempt_bills_exactly_the_work_up_to_its_resume_checkpoint(metered, tenant_a, dataset, tiny_bert,
                                                                                    timeline):
    """Any interleaving of heartbeats (usage segments), step checkpoints and
    best-model saves, then the worker is lost: the attempt bills exactly the
    segments that ended by the step checkpoint the next attempt resumes from
    (best saves are not resume points); the rest is excluded, never dropped."""
    from jobs.models import JobCheckpoint
    from jobs.lifecycle import reap_expired_leases

    token = uuid.uuid4()
    job = _job(tenant_a, dataset, tiny_bert, state=JobState.RUNNING)
    Job.objects.filter(pk=job.pk).update(lease_token=token, lease_expires_at=timezone.now() - timedelta(seconds=1),
                                         heartbeat_at=timezone.now() - timedelta(minutes=2), max_attempts=3)
    clock = timezone.now() - timedelta(hours=2)
    resume_at, segments = None, []
    for what, seconds in timeline:
        clock += timedelta(seconds=seconds)
        if what == "beat":
            segments.append(_segment(job, seconds=seconds, token=token, ended=clock))
        else:
            checkpoint = JobCheckpoint.objects.create(job=job, attempt=1, step=len(segments), path=what,
                                                      is_best=what == "best save")
            JobCheckpoint.objects.filter(pk=checkpoint.pk).update(created_at=clock)
            if what == "step checkpoint":
                resume_at = clock  # workers.checkpoints.latest_checkpoint points here
    assert reap_expired_leases()["requeued"] == [job.pk]
    kept = sum((s.seconds for s in segments if resume_at is not None and s.ended_at <= resume_at), Decimal(0))
    ledger.rollup_usage()
    entries = LedgerEntry.objects.filter(job=job)
    assert (entries.filter(billable=True).aggregate(s=Sum("seconds"))["s"] or 0) == kept
    assert (entries.aggregate(s=Sum("seconds"))["s"] or 0) == sum((s.seconds for s in segments), Decimal(0))
