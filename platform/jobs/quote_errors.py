"""A succeeded job's stored quote (jobs.quotes.submission_quote, written at
submission) against what the job really took.

What a job really took is its *billed seconds* (billing.metering.with_job_usage:
its usage segments not excluded as work lost to infrastructure), not its training
loop's seconds: the quote's time is the whole attempt (startup + work, as
estimates.record measures it) and billed seconds are what the customer pays, so
the time error and the cost error at the quoted rate are one number. Work redone
after a lost worker is excluded from billing, so a crash does not count against
the quote. Only succeeded jobs are judged: a failed or cancelled one (a budget
stop included) did not do the quoted work."""
from __future__ import annotations

from decimal import Decimal

from billing import services as billing
from billing.metering import with_job_usage

from .models import JobState

WITHIN_PERCENT = 15.0  # the goal: within ±15 % once the device class has history


def _billed_seconds(job) -> float:
    if not hasattr(job, "billed_seconds"):  # a job not read through selectors.with_usage
        job.billed_seconds = with_job_usage(type(job).objects.filter(pk=job.pk)).values_list(
            "billed_seconds", flat=True).first()
    return float(job.billed_seconds or 0)


def quote_error(job, *, actual_seconds: float | None = None) -> dict | None:
    """A succeeded job's quote against what it took, or None (no stored quote,
    or not succeeded: a failed or cancelled job did not do the quoted work).
    `actual_seconds`: its billed seconds when the caller has them (else read).
    `error_percent` is signed, (actual − quoted) / quoted: + the job took (and
    cost) more than quoted, − less; `within_range`: low ≤ actual ≤ high."""
    stored = job.quote or {}
    quoted = stored.get("estimated_seconds")
    if job.state != JobState.SUCCEEDED or not isinstance(quoted, (int, float)) or quoted <= 0:
        return None
    actual = float(actual_seconds if actual_seconds is not None else _billed_seconds(job))
    if actual <= 0:
        return None  # nothing metered (e.g. a job made by hand): nothing to compare
    rate = Decimal(str(stored.get("usd_per_second") or "0"))
    low, high = stored.get("low_seconds", quoted), stored.get("high_seconds", quoted)
    cost = billing.amount_micros(seconds=Decimal(str(round(actual, 3))), device_count=1, usd_per_second=rate)
    return {"quoted_seconds": quoted, "low_seconds": low, "high_seconds": high, "actual_seconds": round(actual, 3),
            "quoted_cost_usd": stored.get("estimated_cost_usd"), "actual_cost_usd": billing.usd(cost),
            "error_percent": round(100.0 * (actual - quoted) / quoted, 2), "within_range": low <= actual <= high,
            "history_jobs": int(stored.get("history_jobs") or 0)}


def quote_representation(job) -> dict | None:
    """The job's `quote` in the API and on the job page: `quoted` (as stored at
    submission), and once it succeeded `actual` (billed seconds and their cost
    at the quoted rate), `error_percent` and `within_range`. None for a job
    submitted before quotes were stored."""
    stored = job.quote or {}
    if not stored:
        return None
    quoted = {name: stored.get(name) for name in ("estimated_seconds", "low_seconds", "high_seconds",
                                                 "estimated_cost_usd", "device_class", "method", "basis",
                                                 "history_jobs")}
    error = quote_error(job)
    if error is None:
        return {"quoted": quoted, "actual": None, "error_percent": None, "within_range": None}
    return {"quoted": quoted, "actual": {"seconds": error["actual_seconds"], "cost_usd": error["actual_cost_usd"]},
            "error_percent": error["error_percent"], "within_range": error["within_range"]}
