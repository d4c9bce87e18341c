"""Read-side of billing: what the API and the Billing page show."""
from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from django.db.models import Count, Sum
from django.db.models.functions import TruncDate

from . import metering, services
from .models import BillingAccount, InferenceUsage, Invoice, LedgerEntry, Plan, SpendAlert, UsageSegment


def plan_list():
    return Plan.objects.filter(is_active=True).prefetch_related("rates")


def invoice_list(*, organization):
    return Invoice.objects.filter(organization=organization)


def usage_summary(*, organization, previous: bool = False) -> dict:
    """This (or the previous) period: totals against the allowance and cap, and
    per day and per job (ledger plus usage still running)."""
    account = services.account_for(organization=organization)
    when = None
    if previous:
        when = services.period_for(account).start - timedelta(seconds=1)
    usage = services.period_usage(organization=organization, when=when)
    period, plan = usage.period, account.plan
    segments = (UsageSegment.objects.filter(organization=organization, ended_at__gte=period.start, ended_at__lt=period.end,
                                            exclusion__isnull=True))
    per_day: dict = defaultdict(lambda: {"seconds": 0.0, "micros": 0})
    for row in segments.annotate(day=TruncDate("ended_at")).values("day", "device_class", "device_count").annotate(
            seconds=Sum("seconds")):
        day = per_day[row["day"].isoformat()]
        day["seconds"] += float(row["seconds"])
        day["micros"] += services.price(row, plan)
    inference = InferenceUsage.objects.filter(organization=organization, ended_at__gte=period.start, ended_at__lt=period.end)
    for row in inference.annotate(day=TruncDate("ended_at")).values("day", "device_class", "device_count").annotate(
            seconds=Sum("seconds")):
        day = per_day[row["day"].isoformat()]
        day["seconds"] += float(row["seconds"])
        day["micros"] += services.price(row, plan)
    inference_line = {"seconds": 0.0, "micros": 0, "requests": 0}
    for row in inference.values("device_class", "device_count").annotate(seconds=Sum("seconds"), requests=Count("id")):
        inference_line["seconds"] += float(row["seconds"])
        inference_line["micros"] += services.price(row, plan)
        inference_line["requests"] += row["requests"]
    per_job: dict = defaultdict(lambda: {"seconds": 0.0, "micros": 0})
    for row in segments.values("job_id", "job__name", "job__kind", "device_class", "device_count").annotate(
            seconds=Sum("seconds")):
        job = per_job[row["job_id"]]
        job.update(name=row["job__name"], kind=row["job__kind"])
        job["seconds"] += float(row["seconds"])
        job["micros"] += services.price(row, plan)
    # Usage of attempts still running is already metered (every heartbeat), so the
    # Billing page and the job page agree; such rows are marked running.
    running = metering.open_attempt_usage(organization=organization)
    excluded = (UsageSegment.objects.filter(organization=organization, ended_at__gte=period.start, ended_at__lt=period.end,
                                            exclusion__isnull=False).aggregate(s=Sum("seconds"))["s"] or 0)
    return {
        "period_start": period.start, "period_end": period.end, "plan": plan.slug,
        "used_usd": services.usd(usage.used_micros), "included_usd": services.usd(usage.included_micros),
        "included_used_usd": services.usd(usage.included_used_micros), "overage_usd": services.usd(usage.overage_micros),
        "spend_cap_usd": services.usd(usage.cap_micros) if usage.cap_micros is not None else None,
        "cap_fraction": round(usage.cap_fraction, 4) if usage.cap_fraction is not None else None,
        "included_fraction": round(usage.included_used_micros / usage.included_micros, 4) if usage.included_micros else None,
        "not_billed_seconds": float(excluded),
        "per_day": [{"date": d, "seconds": round(v["seconds"], 3), "usd": services.usd(v["micros"])} for d, v in sorted(per_day.items())],
        "per_job": sorted(({"job_id": j, "name": v["name"], "kind": v["kind"], "seconds": round(v["seconds"], 3),
                            "usd": services.usd(v["micros"]), "running": j in running,
                            "running_seconds": round(running.get(j, 0.0), 3)} for j, v in per_job.items()),
                          key=lambda r: -float(r["usd"]))[:100],
        "ledger_entries": LedgerEntry.objects.filter(organization=organization, period_start=period.start).count(),
        # Its own line beside the jobs: try-it and chat completions, worker time at the same per-second rates.
        "inference": {"seconds": round(inference_line["seconds"], 3), "usd": services.usd(inference_line["micros"]),
                      "requests": inference_line["requests"]},
        "jobs_usd": services.usd(sum(v["micros"] for v in per_job.values())),
    }


def banner_for(*, organization) -> dict | None:
    """What the dashboard shows on every page: a past-due subscription, or the
    highest spend-cap threshold reached this period."""
    account = BillingAccount.objects.filter(organization=organization).select_related("plan").first()
    if account is None:
        return None
    if account.is_blocked:
        return {"level": "error", "message": f"The subscription is {account.get_status_display().lower()}: new jobs are "
                                             "refused until the payment method is updated."}
    period = services.period_for(account)
    alert = SpendAlert.objects.filter(organization=organization, period_start=period.start).order_by("-threshold").first()
    if alert is None:
        return None
    return {"level": "error" if alert.threshold >= 100 else "warning",
            "message": f"{alert.threshold}% of the monthly spend cap used (${alert.spent_cents / 100:.2f} of "
                       f"${alert.cap_cents / 100:.2f})." + (" New jobs are refused." if alert.threshold >= 100 else "")}
