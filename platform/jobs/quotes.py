"""A job's cost before it runs: jobs.estimates' time (its tokens ÷ the
throughput past jobs of its method measured on the device class, with a range
from their spread) priced at the organization's plan rate (its entitlements)
against the compute still included this period (billing's period usage)."""
from __future__ import annotations

from decimal import Decimal

from billing import services as billing
from tenancy.entitlements import Entitlements, entitlements_for

from .estimates import estimate
from .models import JobKind


def trained_tokens(job) -> int | None:
    """A chat fine-tune's trained tokens (assistant tokens with weight 1, after each conversation is cut at the
    job's max_length) × epochs: what the price buys, shown beside it. None for other kinds. The split it trains
    on: the train split, or the whole version when a validation set of its own validates."""
    if job.kind != JobKind.CHAT_FINETUNE or job.dataset_version_id is None:
        return None
    from corpora.selectors import chat_token_stats

    spec = job.spec or {}
    stats = chat_token_stats(version=job.dataset_version, base_model=job.base_model, max_length=spec.get("max_length"))
    splits = ["train", "validation"] if job.validation_dataset_version_id else ["train"]
    per_epoch = sum(int((stats.get(split) or {}).get("trained_tokens_kept") or 0) for split in splits)
    return int(spec.get("epochs") or 1) * per_epoch


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
        "trained_tokens": trained_tokens(job),
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
