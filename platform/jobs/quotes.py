"""A job's cost before it runs: jobs.estimates' time (its tokens ÷ the
throughput past jobs of its method measured on the device class, with a range
from their spread) priced at the organization's plan."""
from __future__ import annotations

from decimal import Decimal

from jobs.estimates import estimate

from . import services


def quote(job) -> dict:
    """`job` is an unsaved Job as the submit services would queue it."""
    account = services.account_for(organization=job.organization)
    guess = estimate(job)
    rate = account.plan.rate_for(guess.device_class)
    usage = services.period_usage(organization=job.organization)
    cost = services.amount_micros(seconds=Decimal(str(round(guess.seconds, 3))), device_count=1, usd_per_second=rate)
    included_left = max(0, usage.included_micros - usage.used_micros)
    billable = max(0, cost - included_left)
    return {
        "device_class": guess.device_class, "method": guess.method, "tokens": guess.tokens,
        "estimated_seconds": round(guess.seconds), "low_seconds": round(guess.low_seconds),
        "high_seconds": round(guess.high_seconds), "usd_per_second": str(rate),
        "estimated_cost_usd": services.usd(cost), "included_remaining_usd": services.usd(included_left),
        "billable_usd": services.usd(billable), "plan": account.plan.slug,
        "history_jobs": guess.history_jobs, "basis": guess.basis,
    }
