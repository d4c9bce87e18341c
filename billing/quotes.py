"""A job's cost before it runs: the work (tokens × passes × model parameters)
divided by the throughput measured on past jobs of the same device class
(token·parameters per second), priced at the organization's plan."""
from __future__ import annotations

import statistics
from decimal import Decimal

from . import services

# Until a device class has finished jobs to learn from (measured here: MiniLM-L6,
# 22.7 M parameters, ~16 tokens per BANKING77 row: 120 rows/s on 2 CPU cores,
# ~700 rows/s on an H100 — docs/jobs.md, docs/compression.md).
DEFAULT_TOKEN_PARAMETERS_PER_SECOND = {"cpu": 4.0e10, "nvidia-*": 2.5e11}
STARTUP_SECONDS = 20  # loading, tokenizing, exporting
WORDS_TO_TOKENS = 1.3


def _mean_tokens(version) -> float:
    lengths = version.report.get("lengths") or {}
    mean = float(lengths.get("mean") or 16)
    return mean if lengths.get("unit") == "tokens" else mean * WORDS_TO_TOKENS


def _model_parameters(job) -> int:
    if job.base_model is not None and job.base_model.parameter_count:
        return job.base_model.parameter_count
    if job.source_model_id:
        return job.source_model.parameter_count
    return 110_000_000


def _device_class(job) -> str:
    """Where jobs of this queue ran lately; CPU when nothing has run yet."""
    from jobs.models import Job

    last = (Job.objects.filter(queue=job.queue).exclude(device_class="").order_by("-finished_at", "-id")
            .values_list("device_class", flat=True).first())
    return last or "cpu"


def measured_throughput(device_class: str) -> tuple[float, int]:
    """(token·parameters per second, how many past jobs it comes from)."""
    from jobs.models import Job, JobKind, JobState

    jobs = (Job.objects.filter(kind=JobKind.FINETUNE, state=JobState.SUCCEEDED, device_class=device_class,
                               base_model__parameter_count__gt=0)
            .select_related("base_model", "dataset_version").order_by("-finished_at")[:20])
    samples = []
    for job in jobs:
        rate = (job.result or {}).get("examples_per_second")
        if rate and job.base_model and job.base_model.parameter_count:
            samples.append(float(rate) * _mean_tokens(job.dataset_version) * job.base_model.parameter_count)
    if samples:
        return statistics.median(samples), len(samples)
    default = DEFAULT_TOKEN_PARAMETERS_PER_SECOND["nvidia-*" if device_class.startswith("nvidia-") else "cpu"]
    return default, 0


def estimate_seconds(job, throughput: float) -> float:
    version = job.dataset_version
    tokens = _mean_tokens(version)
    parameters = _model_parameters(job)
    train_rows, validation_rows = version.train_count or 0, version.validation_count or 0
    spec = job.spec or {}
    if job.kind == "finetune":
        epochs = int(spec.get("epochs") or 3)
    else:
        epochs = int((spec.get("training") or {}).get("epochs") or 0) if ("training" in spec) else 0
    # Training is ~3 forward passes' work (forward + backward); evaluation 1.
    train = epochs * train_rows * tokens * parameters / throughput
    evaluation = (epochs + 2) * validation_rows * tokens * parameters / (3 * throughput)
    if job.kind == "prune" and spec.get("sparsity") is None:
        evaluation += 6 * validation_rows * tokens * parameters / (3 * throughput)  # the search's probes
    return STARTUP_SECONDS + train + evaluation


def quote(job) -> dict:
    """`job` is an unsaved Job as the submit services would queue it."""
    account = services.account_for(organization=job.organization)
    device_class = _device_class(job)
    throughput, samples = measured_throughput(device_class)
    seconds = estimate_seconds(job, throughput)
    spread = 0.2 if samples else 0.4
    rate = account.plan.rate_for(device_class)
    usage = services.period_usage(organization=job.organization)
    cost = services.amount_micros(seconds=Decimal(str(round(seconds, 3))), device_count=1, usd_per_second=rate)
    included_left = max(0, usage.included_micros - usage.used_micros)
    billable = max(0, cost - included_left)
    return {
        "device_class": device_class, "estimated_seconds": round(seconds), "low_seconds": round(seconds * (1 - spread)),
        "high_seconds": round(seconds * (1 + spread)), "usd_per_second": str(rate),
        "estimated_cost_usd": services.usd(cost), "included_remaining_usd": services.usd(included_left),
        "billable_usd": services.usd(billable), "plan": account.plan.slug,
        "basis": f"throughput measured on {samples} past job(s) on {device_class}" if samples
        else f"default throughput for {device_class} (no finished jobs to learn from yet)",
    }
