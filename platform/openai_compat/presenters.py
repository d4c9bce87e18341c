"""Lathe rows as the objects of OpenAI's API (the `openai` SDK's FileObject, FineTuningJob,
FineTuningJobEvent, FineTuningJobCheckpoint, Model), each job with a `lathe` extension object."""
from __future__ import annotations

from django.db.models import Sum
from django.urls import reverse

from jobs.models import Job, JobState
from jobs.selectors import eta

from . import ids, selectors

# Lathe's job states → OpenAI's status. Files are validated when uploaded and again when the job is created,
# so a job is never seen in `validating_files`.
STATUS = {JobState.QUEUED: "queued", JobState.RUNNING: "running", JobState.SUCCEEDED: "succeeded",
          JobState.FAILED: "failed", JobState.CANCELLED: "cancelled", JobState.PAUSED: "paused"}
EVENT_LEVELS = {"info": "info", "warning": "warn", "error": "error"}
# Checkpoint metrics: Lathe's names → OpenAI's.
CHECKPOINT_METRICS = {"train_loss": "train_loss", "loss": "train_loss", "eval_loss": "valid_loss",
                      "valid_loss": "valid_loss", "eval_token_accuracy": "valid_mean_token_accuracy",
                      "eval_mean_token_accuracy": "valid_mean_token_accuracy"}


def unix(when) -> int | None:
    return int(when.timestamp()) if when else None


def file_object(version) -> dict:
    warnings = version.report.get("warnings") or []
    return {
        "id": ids.encode("file", version.pk), "object": "file", "bytes": version.size_bytes,
        "created_at": unix(version.created_at), "filename": version.original_filename, "purpose": selectors.PURPOSE,
        "status": "processed", "expires_at": None,
        "status_details": "; ".join(str(w.get("message", w)) if isinstance(w, dict) else str(w) for w in warnings[:5]) or None,
        "lathe": {"dataset_id": version.dataset_id, "dataset_version": version.number, "task": version.task,
                  "conversations": version.row_count, "rejected_lines": version.rejected_count,
                  "train_conversations": version.train_count, "validation_conversations": version.validation_count},
    }


def list_object(data: list, *, has_more: bool | None = None) -> dict:
    body = {"object": "list", "data": data}
    if has_more is not None:
        body.update(has_more=has_more, first_id=data[0]["id"] if data else None, last_id=data[-1]["id"] if data else None)
    return body


def hyperparameters_of(job: Job) -> dict:
    request = selectors.request_of(job)
    learning_rate, base = job.spec.get("learning_rate"), request.learning_rate_base if request else None
    return {"n_epochs": job.spec.get("epochs", "auto"), "batch_size": job.spec.get("batch_size", "auto"),
            "learning_rate_multiplier": round(learning_rate / base, 6) if learning_rate and base else None}


def _price(job: Job, entitlements) -> str | None:
    from billing.models import UsageSegment
    from billing.services import price, usd

    if entitlements is None:
        return None
    rows = (UsageSegment.objects.filter(job=job, exclusion__isnull=True).values("device_class", "device_count")
            .annotate(seconds=Sum("seconds")))
    return usd(sum(price(row, entitlements) for row in rows))


def job_object(job: Job, *, entitlements=None) -> dict:
    request = selectors.request_of(job)
    hyperparameters = hyperparameters_of(job)
    succeeded = job.state == JobState.SUCCEEDED
    error = None
    if job.state == JobState.FAILED:
        error = {"code": "job_failed", "message": job.failure_reason or "The job failed.", "param": None}
    estimated = eta(job=job).at if not job.is_terminal else None
    billed = getattr(job, "billed_seconds", None)
    return {
        "id": ids.encode("job", job.pk), "object": "fine_tuning.job", "created_at": unix(job.created_at),
        "error": error, "fine_tuned_model": selectors.model_name_of(job) if succeeded else None,
        "finished_at": unix(job.finished_at) if job.is_terminal else None,
        "hyperparameters": hyperparameters, "model": job.base_model.slug if job.base_model else None,
        "organization_id": f"org-{job.organization.slug}", "result_files": [],
        "seed": request.seed if request and request.seed is not None else job.spec.get("seed", 0),
        "status": STATUS.get(job.state, job.state),
        "trained_tokens": (job.result or {}).get("train_tokens") if succeeded else None,
        "training_file": ids.encode("file", job.dataset_version_id), "validation_file": (ids.encode("file", job.validation_dataset_version_id)
                            if job.validation_dataset_version_id else None),
        "estimated_finish": unix(estimated), "integrations": [],
        "metadata": request.metadata if request else None,
        "method": {"type": "supervised", "supervised": {"hyperparameters": hyperparameters}},
        "user_provided_suffix": (request.suffix or None) if request else None,
        "lathe": {
            "job_id": job.pk, "state": job.state, "method": job.method,
            # A running job asked to pause reads `running` until it stops at its next step, then `paused`.
            "pause_requested": job.pause_requested_at is not None and job.state == JobState.RUNNING, "base_model": job.base_model.slug if job.base_model else None,
            "progress": {"step": job.step, "total_steps": job.total_steps, "epoch": round(job.epoch or 0, 3)},
            "billed_seconds": float(billed) if billed is not None else None, "price_usd": _price(job, entitlements),
            "max_cost_usd": str(job.max_cost) if job.max_cost is not None else None,
            "model_deleted": bool(request and request.model_deleted_at),
            "artifacts": [{"name": a.name, "kind": a.kind, "bytes": a.size_bytes,
                           "url": reverse("api:job-artifact-download", kwargs={"job_id": job.pk, "name": a.name})}
                          for a in job.artifacts.order_by("name")],
            "job_url": reverse("api:job-detail", kwargs={"job_id": job.pk}),
            "unsupported": {"integrations": "Not run on Lathe; sent integrations are kept but ignored."}
            if request and request.integrations else {},
        },
    }


def event_object(event) -> dict:
    return {"id": ids.encode("event", event.pk), "object": "fine_tuning.job.event", "created_at": unix(event.created_at),
            "level": EVENT_LEVELS.get(event.level, "info"), "message": event.message, "type": "message", "data": None}


def checkpoint_object(checkpoint, *, job: Job) -> dict:
    metrics = {"step": float(checkpoint.step)}
    for name, value in (checkpoint.metrics or {}).items():
        if name in CHECKPOINT_METRICS and isinstance(value, (int, float)):
            metrics[CHECKPOINT_METRICS[name]] = float(value)
    return {"id": ids.encode("checkpoint", checkpoint.pk), "object": "fine_tuning.job.checkpoint",
            "created_at": unix(checkpoint.created_at),
            "fine_tuned_model_checkpoint": f"{selectors.model_name_of(job)}:ckpt-step-{checkpoint.step}",
            "fine_tuning_job_id": ids.encode("job", job.pk), "metrics": metrics, "step_number": checkpoint.step,
            "lathe": {"is_best": checkpoint.is_best, "metrics": checkpoint.metrics or {}}}


def base_model_object(model) -> dict:
    return {"id": model.slug, "object": "model", "created": unix(model.created_at) if hasattr(model, "created_at") else 0,
            "owned_by": "lathe", "lathe": {"name": model.name, "parameters": model.parameter_count, "kind": "base"}}


def fine_tuned_model_object(job: Job) -> dict:
    return {"id": selectors.model_name_of(job), "object": "model", "created": unix(job.finished_at),
            "owned_by": f"org-{job.organization.slug}",
            "lathe": {"kind": "fine-tuned", "base_model": job.base_model.slug, "fine_tuning_job": ids.encode("job", job.pk),
                      "artifacts_url": reverse("api:job-artifacts", kwargs={"job_id": job.pk})}}
