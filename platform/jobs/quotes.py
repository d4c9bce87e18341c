"""A job's cost before it runs: jobs.estimates' time (its tokens ÷ the
throughput past jobs of its method measured on the device class, with a range
from their spread) priced at the organization's plan rate (its entitlements)
against the compute still included this period (billing's period usage)."""
from __future__ import annotations

from decimal import Decimal

from billing import services as billing
from tenancy.entitlements import Entitlements, entitlements_for

from .estimates import estimate


def quote(job, *, entitlements: Entitlements | None = None) -> dict:
    """`job` is an unsaved Job as the submit services would queue it;
    `entitlements`, those already read for this request."""
    entitlements = entitlements or entitlements_for(organization=job.organization)
    guess = estimate(job)
    rate = entitlements.rate_for(guess.device_class)
    usage = billing.period_usage(organization=job.organization, entitlements=entitlements)
    cost = billing.amount_micros(seconds=Decimal(str(round(guess.seconds, 3))), device_count=1, usd_per_second=rate)
    included_left = max(0, usage.included_micros - usage.used_micros)
    payable = max(0, cost - included_left)
    return {
        "device_class": guess.device_class, "method": guess.method, "tokens": guess.tokens,
        "estimated_seconds": round(guess.seconds), "low_seconds": round(guess.low_seconds),
        "high_seconds": round(guess.high_seconds), "usd_per_second": str(rate),
        "estimated_cost_usd": billing.usd(cost), "included_remaining_usd": billing.usd(included_left),
        "billable_usd": billing.usd(payable), "plan": entitlements.plan_slug,
        "history_jobs": guess.history_jobs, "basis": guess.basis,
    }


# --- the stored quote (its error against what the job took: jobs/quote_errors.py) ----------

def submission_quote(job, *, entitlements: Entitlements) -> dict:
    """The quote to store on a job being submitted (`job` unsaved, as
    jobs.submission would write it): exactly what POST /jobs/quote answers for
    the same body at that moment."""
    return quote(job, entitlements=entitlements)
