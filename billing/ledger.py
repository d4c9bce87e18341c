"""From usage segments to money.

1. (metering.py) usage segments, one per heartbeat; when the reaper takes a job
   from a lost worker, the attempt's usage after the checkpoint the next attempt
   resumes from is excluded (`metering.exclude_lost_work`: billed once, not twice).
2. `rollup_usage`: segments of closed attempts become immutable ledger entries
   (one per job attempt, device and period), each segment in exactly one;
   `rollup_inference_usage`: inference requests' worker time, per organization, device
   and closed hour, into entries of kind `inference` (no job).
3. `export_pending`: billable entries of metered subscriptions go to Stripe as
   meter events (identifier and idempotency key = the entry), through the
   entries themselves as an outbox; a duplicate-identifier answer counts as
   delivered; entries too old for Stripe are flagged for operators.
4. `reconcile_closed_periods`: local totals against Stripe's meter summaries.
5. `check_spend_alerts`: 50 / 80 / 100 % of the spend cap, once each per period.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

import stripe
from django.conf import settings
from django.core.mail import mail_admins, send_mail
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from . import gateway, services
from .models import (BillingAccount, ExportStatus, InferenceUsage, LedgerEntry, Reconciliation, SpendAlert, SubscriptionStatus,
                     UsageKind, UsageSegment)

logger = logging.getLogger(__name__)
METERED_STATUSES = (SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING, SubscriptionStatus.PAST_DUE,
                    SubscriptionStatus.UNPAID)
ALERT_THRESHOLDS = (50, 80, 100)


def _export_status(account: BillingAccount) -> str:
    plan = account.plan
    if (account.stripe_customer_id and account.status in METERED_STATUSES and plan.stripe_meter_event_name
            and gateway.enabled()):
        return ExportStatus.PENDING
    return ExportStatus.NOT_NEEDED


def _grouped(rows, key) -> tuple[dict[int, BillingAccount], dict[tuple, list]]:
    """Usage rows (segments, inference requests) grouped by `key(row, period)`, each organization's billing
    account read once; `period` is the billing period the row ended in."""
    accounts: dict[int, BillingAccount] = {}
    groups: dict[tuple, list] = defaultdict(list)
    for row in rows:
        account = accounts.get(row.organization_id)
        if account is None:
            account = accounts[row.organization_id] = services.account_for(organization=row.organization)
        groups[key(row, services.period_for(account, row.ended_at))].append(row)
    return accounts, groups


def _priced_entry(account: BillingAccount, members: list, *, device_class: str, devices: int, billable: bool,
                  period_start, period_end, **fields) -> LedgerEntry:
    """One ledger entry for `members` (usage rows of one organization, device and period): their seconds at the
    plan's rate for the device class, and the Stripe meter export the account calls for."""
    rate = account.plan.rate_for(device_class)
    seconds = sum((m.seconds for m in members), Decimal("0"))
    export = _export_status(account) if billable else ExportStatus.NOT_NEEDED
    return LedgerEntry.objects.create(
        organization_id=account.organization_id, plan=account.plan, device_class=device_class, device_count=devices,
        seconds=seconds, usd_per_second=rate,
        amount_micros=services.amount_micros(seconds=seconds, device_count=devices, usd_per_second=rate) if billable else 0,
        billable=billable, period_start=period_start, period_end=period_end,
        usage_started_at=min(m.started_at for m in members), usage_ended_at=max(m.ended_at for m in members),
        export_status=export, stripe_customer_id=account.stripe_customer_id if export == ExportStatus.PENDING else "",
        stripe_meter_event_name=account.plan.stripe_meter_event_name if export == ExportStatus.PENDING else "",
        **fields)


def rollup_usage() -> list[LedgerEntry]:
    """Ledger entries for every closed attempt's unrolled segments."""
    created = []
    with transaction.atomic():
        closed = Q(job__lease_token__isnull=True) | ~Q(job__lease_token=F("lease_token"))
        segments = list(UsageSegment.objects.select_for_update(skip_locked=True, of=("self",))
                        .filter(closed, ledger_entry__isnull=True).select_related("exclusion").order_by("id"))
        if not segments:
            return []
        # billable: not excluded (a missing reverse one-to-one raises, so hasattr is False)
        accounts, groups = _grouped(segments, lambda s, period: (
            s.organization_id, s.job_id, s.attempt, s.device_class, s.device_count, not hasattr(s, "exclusion"),
            period.start, period.end))
        for (org_id, job_id, attempt, device_class, devices, billable, start, end), members in groups.items():
            entry = _priced_entry(accounts[org_id], members, device_class=device_class, devices=devices,
                                  billable=billable, period_start=start, period_end=end, job_id=job_id,
                                  attempt=attempt, note="" if billable else members[0].exclusion.reason[:200])
            UsageSegment.objects.filter(pk__in=[s.pk for s in members]).update(ledger_entry=entry)
            created.append(entry)
    return created


def _hour(moment):
    return moment.replace(minute=0, second=0, microsecond=0)


def rollup_inference_usage(now=None) -> list[LedgerEntry]:
    """Inference requests' metered worker time of every closed hour (UTC) becomes ledger entries of kind
    `inference` (no job): one per organization, device, hour and billing period; each request in exactly one.
    The open hour's usage is counted as unrolled (services.unrolled_micros) until then."""
    now = now or timezone.now()
    created = []
    with transaction.atomic():
        rows = list(InferenceUsage.objects.select_for_update(skip_locked=True)
                    .filter(ledger_entry__isnull=True, ended_at__lt=_hour(now)).order_by("id"))
        if not rows:
            return []
        accounts, groups = _grouped(rows, lambda r, period: (
            r.organization_id, r.device_class, r.device_count, _hour(r.ended_at), period.start, period.end))
        for (org_id, device_class, devices, hour, start, end), members in groups.items():
            entry = _priced_entry(accounts[org_id], members, device_class=device_class, devices=devices, billable=True,
                                  period_start=start, period_end=end, usage_kind=UsageKind.INFERENCE, job=None,
                                  attempt=0, note=f"Inference {hour:%Y-%m-%d %H}:00 UTC: {len(members)} request(s)")
            InferenceUsage.objects.filter(pk__in=[r.pk for r in members]).update(ledger_entry=entry)
            created.append(entry)
    return created


def _mark(entry_id: int, **fields) -> None:
    LedgerEntry.objects.filter(pk=entry_id).update(**fields)


def export_one(entry_id: int, *, after_send=None) -> str:
    """Send one pending entry; its new export status. `after_send` is a test
    hook between Stripe's answer and our write (a crash there must not bill twice)."""
    with transaction.atomic():
        entry = LedgerEntry.objects.select_for_update(skip_locked=True).filter(pk=entry_id, export_status=ExportStatus.PENDING).first()
        if entry is None:
            return "skipped"
        oldest = timezone.now() - timedelta(days=settings.STRIPE_METER_EVENT_MAX_AGE_DAYS)
        if entry.usage_ended_at < oldest:
            _mark(entry.pk, export_status=ExportStatus.TOO_OLD,
                  export_error=f"Usage ended {entry.usage_ended_at:%Y-%m-%d}: older than Stripe accepts; invoice it by hand.")
            logger.error("Ledger entry %s is too old for Stripe's meter; flagged for manual handling", entry.pk)
            return ExportStatus.TOO_OLD
        if entry.amount_micros <= 0:
            _mark(entry.pk, export_status=ExportStatus.SENT, exported_at=timezone.now(), export_error="nothing to send (0)")
            return ExportStatus.SENT
        timestamp = max(entry.period_start, min(entry.usage_ended_at, entry.period_end - timedelta(seconds=1)))
        try:
            outcome = gateway.send_meter_event(identifier=entry.meter_identifier, event_name=entry.stripe_meter_event_name,
                                               customer_id=entry.stripe_customer_id, value=entry.amount_micros,
                                               timestamp=min(timestamp, timezone.now()))
        except (stripe.StripeError, gateway.BillingNotConfigured) as exc:
            _mark(entry.pk, export_attempts=F("export_attempts") + 1, export_error=f"{type(exc).__name__}: {exc}"[:2000])
            return ExportStatus.PENDING
        if after_send:
            after_send(entry)
        _mark(entry.pk, export_status=ExportStatus.SENT, exported_at=timezone.now(), export_attempts=F("export_attempts") + 1,
              export_error="" if outcome == gateway.MeterEventResult.SENT else "Stripe already had it (duplicate identifier)")
        return ExportStatus.SENT


def export_pending(limit: int = 500) -> dict:
    ids = list(LedgerEntry.objects.filter(export_status=ExportStatus.PENDING).order_by("id").values_list("pk", flat=True)[:limit])
    outcomes: dict[str, int] = defaultdict(int)
    for entry_id in ids:
        outcomes[export_one(entry_id)] += 1
    return dict(outcomes)


def reconcile_closed_periods(now=None) -> list[Reconciliation]:
    """For each metered account and each of its periods that ended (at least an
    hour ago, so late events landed): local billable total vs Stripe's."""
    now = now or timezone.now()
    results = []
    periods = (LedgerEntry.objects.filter(period_end__lt=now - timedelta(hours=1))
               .exclude(stripe_customer_id="").values("organization_id", "period_start", "period_end", "stripe_customer_id")
               .distinct())
    for row in periods:
        if Reconciliation.objects.filter(organization_id=row["organization_id"], period_start=row["period_start"], matches=True).exists():
            continue
        account = BillingAccount.objects.select_related("plan").get(organization_id=row["organization_id"])
        entries = LedgerEntry.objects.filter(organization_id=row["organization_id"], period_start=row["period_start"],
                                             billable=True).exclude(stripe_customer_id="")
        local = entries.aggregate(total=Sum("amount_micros"))["total"] or 0
        note, remote = "", None
        try:
            remote = gateway.meter_total(meter_id=account.plan.stripe_meter_id, customer_id=row["stripe_customer_id"],
                                         start=row["period_start"], end=row["period_end"])
        except (stripe.StripeError, gateway.BillingNotConfigured) as exc:
            note = f"Stripe's summary could not be read: {exc}"
        pending = entries.exclude(export_status=ExportStatus.SENT).count()
        matches = remote is not None and remote == local
        if not matches and not note:
            note = f"Local {local} µ$ vs Stripe {remote} µ$ (difference {local - (remote or 0)}); {pending} entr(y/ies) not sent."
        rec, _ = Reconciliation.objects.update_or_create(
            organization_id=row["organization_id"], period_start=row["period_start"],
            defaults={"period_end": row["period_end"], "local_micros": local, "stripe_micros": remote, "matches": matches,
                      "note": note})
        if not matches:
            logger.error("Billing reconciliation mismatch for organization %s, period %s: %s", row["organization_id"],
                         row["period_start"], note)
            mail_admins("Lathe billing: reconciliation mismatch", f"Organization {row['organization_id']}, period "
                        f"{row['period_start']:%Y-%m-%d}: {note}", fail_silently=True)
        results.append(rec)
    return results


def check_spend_alerts(*, organization) -> list[int]:
    """Record and e-mail each threshold of the spend cap reached this period, once."""
    from tenancy.models import Membership, Role

    usage = services.period_usage(organization=organization)
    if not usage.cap_micros:
        return []
    reached = [t for t in ALERT_THRESHOLDS if usage.overage_micros * 100 >= usage.cap_micros * t]
    sent = []
    for threshold in reached:
        try:
            with transaction.atomic():
                SpendAlert.objects.create(organization=organization, period_start=usage.period.start, threshold=threshold,
                                          spent_cents=usage.overage_micros // 10_000,
                                          cap_cents=usage.cap_micros // 10_000)
        except IntegrityError:
            continue  # already alerted this period
        sent.append(threshold)
    if sent:
        emails = list(Membership.objects.filter(organization=organization, role__in=[Role.OWNER, Role.ADMIN])
                      .values_list("user__email", flat=True))
        top = max(sent)
        send_mail(f"Lathe: {organization.name} has used {top}% of its monthly spend cap",
                  f"Spent ${services.dollars(usage.overage_micros)} of the ${services.dollars(usage.cap_micros)} cap beyond the "
                  f"included compute this period (until {usage.period.end:%Y-%m-%d}). "
                  + ("New jobs are refused and running jobs stop until the cap is raised." if top >= 100 else ""),
                  None, emails, fail_silently=True)
    return sent
