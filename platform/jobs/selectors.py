from __future__ import annotations

from django.db.models import Q, QuerySet

from billing.metering import with_job_usage
from core.errors import NotFound, field_error
from workers.kinds import PRUNE_METHODS

from .models import FINETUNE_KINDS, Job, JobArtifact, JobKind, JobState, Method


def job_list(*, organization, state: str | None = None, kind: str | None = None, created_after=None, created_before=None) -> QuerySet[Job]:
    qs = Job.objects.filter(organization=organization).select_related("base_model", "source_model", "dataset_version__dataset", "prediction_input",
                                                                     "test_dataset_version__dataset",
                                                                     "validation_dataset_version__dataset")
    if state:
        if state not in JobState.values:
            raise field_error("state", f"state must be one of {', '.join(JobState.values)}.")
        qs = qs.filter(state=state)
    if kind:
        if kind not in JobKind.values:
            raise field_error("kind", f"kind must be one of {', '.join(JobKind.values)}.")
        qs = qs.filter(kind=kind)
    if created_after:
        qs = qs.filter(created_at__gte=created_after)
    if created_before:
        qs = qs.filter(created_at__lt=created_before)
    return with_usage(qs).order_by("-created_at", "-id")


def with_usage(qs: QuerySet[Job]) -> QuerySet[Job]:
    """Each job's seconds: `billed_seconds`, `excluded_seconds`, `running_seconds`
    (billing.metering.with_job_usage, which owns the usage segments)."""
    return with_job_usage(qs)


# What `method` means per kind (the API's `method`, the pages): a fine-tune's
# training method, a compression job's compression method.
JOB_METHODS = {
    JobKind.FINETUNE: tuple(Method.values),           # full | lora
    JobKind.QUANTIZE: ("int8",),                      # dynamic int8 (PyTorch and ONNX)
    JobKind.PRUNE: PRUNE_METHODS,                     # the prune_method (workers/kinds.py)
    JobKind.DISTILL: ("distill",),                    # knowledge distillation into a student
    JobKind.CHAT_FINETUNE: tuple(Method.values),      # full | lora, on a causal LM
    JobKind.PREDICT: ("predict", "generate"),         # batch predictions: a classifier's, a chat model's replies
    JobKind.EVALUATE: ("evaluate",),                  # the comparison: no training, every model scored
}
METHOD_VALUES = list(dict.fromkeys(m for methods in JOB_METHODS.values() for m in methods))


def job_method(job: Job) -> str:
    """The method of this job's kind: full/lora for fine-tunes; int8, the prune
    method or distill for compression jobs (their stored `method` column is the
    training default and says nothing about them)."""
    if job.kind in FINETUNE_KINDS:
        return job.method
    if job.kind == JobKind.PRUNE:
        return job.spec.get("prune_method") or "magnitude"
    if job.kind == JobKind.PREDICT and predict_task(job) == "chat":
        return "generate"
    return JOB_METHODS[job.kind][0]


def predict_task(job: Job) -> str | None:
    """What a predict job's inputs are: its uploaded file's task, else its dataset version's."""
    if job.prediction_input_id:
        return job.prediction_input.task
    return job.dataset_version.task if job.dataset_version_id else None


# Under-training: the rule, once (the job page and the API's `hints`).
UNDER_TRAINED_MIN_GAIN_POINTS = 1.0


def training_hints(job: Job) -> list[dict]:
    """Hints about a finished fine-tune. `under_trained`: it ran every epoch
    and its last evaluation is still clearly improving — the best epoch is the
    last and it beat every earlier epoch by more than
    UNDER_TRAINED_MIN_GAIN_POINTS points of the selection metric (accuracy)."""
    if job.kind != JobKind.FINETUNE or job.state != JobState.SUCCEEDED:
        return []
    metric = job.spec.get("metric_for_best") or "accuracy"
    history = [h for h in (job.result or {}).get("history") or [] if isinstance(h.get(metric), (int, float))]
    if len(history) < 2:
        return []
    *earlier, last = history
    gain = round(100 * (last[metric] - max(h[metric] for h in earlier)), 3)
    if gain <= UNDER_TRAINED_MIN_GAIN_POINTS:
        return []
    epochs = job.spec.get("epochs") or len(history)
    auto = job.requested.get("epochs", "auto") == "auto"
    tries = [f"more epochs (it ran {epochs}{', chosen by auto' if auto else ''}; try {2 * epochs})"]
    learning_rate = job.spec.get("learning_rate")
    if job.method == Method.LORA and learning_rate:
        tries.append(f"a higher learning rate (LoRA often needs more: it was {learning_rate:g}; try {2 * learning_rate:g})")
    first = history[0][metric]
    return [{"code": "under_trained",
             "message": f"This job looks under-trained: {metric} was still rising at its last epoch "
                        f"({first:.2f} at epoch {history[0].get('epoch', 1)} → {last[metric]:.2f} at epoch "
                        f"{last.get('epoch', len(history))}, +{gain:.1f} points over the best earlier epoch).",
             "suggestions": tries}]


def job_evaluation(job: Job) -> dict | None:
    """A fine-tune's scores, each labelled with what it was measured on: the validation split chose
    the epoch and the checkpoint (a selection split, optimistic about unseen data); the test set
    (attached or carved) was scored once by the delivered model, after every choice."""
    if job.kind not in FINETUNE_KINDS:
        return None
    chat = job.kind == JobKind.CHAT_FINETUNE
    result = job.result or {}
    refit = result.get("refit")
    version, separate = job.dataset_version, job.validation_dataset_version
    rows = separate.train_count + separate.validation_count if separate is not None else version.validation_count
    metrics = result.get("best_metrics")
    if chat and metrics is not None:  # the replies to (up to 20) validation prompts, generated once at the end
        generated = (result.get("generation") or {}).get("finetuned") or {}
        metrics = {**metrics, **{k: generated[k] for k in ("exact_match", "token_f1") if k in generated}}
    selection = {"split": "validation", "rows": rows, "metrics": metrics,
                 "description": "Selection split: the validation " + ("conversations " if chat else "rows ")
                                + (f"({separate.dataset.name} v{separate.number}, every row) " if separate is not None else "")
                                + ("whose loss chose the epoch and the checkpoint" if chat
                                   else "that chose the epoch and the checkpoint")
                                + ", so its score is optimistic about unseen data"
                                + (f"; the delivered model was then refit on train + validation for "
                                   f"{refit['epochs']} epoch(s)" if refit else "")}
    test = None
    tested = job.test_dataset_version
    if tested is not None or job.test_fraction:
        measured = result.get("test_metrics")
        source = (f"{tested.dataset.name} v{tested.number} (every row)" if tested is not None
                  else f"{job.test_fraction:.0%} of the train split, carved before training")
        count = measured.get("conversations" if chat else "rows") if measured else None
        test = {"split": "test", "rows": count if measured else (
                    tested.train_count + tested.validation_count if tested is not None else None),
                "metrics": {k: v for k, v in measured.items() if k not in ("rows", "conversations")} if measured else None,
                "description": f"Held-out test set: {source}; never used for training, early stopping or the "
                               "checkpoint choice, scored once by the delivered model"}
    return {"selection": selection, "test": test}


def job_get(*, organization, job_id) -> Job:
    job = job_list(organization=organization).filter(pk=job_id).first()
    if job is None:
        raise NotFound("Job not found.")
    return job


def fine_tunes_with_held_out_rows(*, organization):
    """The organization's succeeded fine-tunes that held rows out (a test set attached or carved), newest first:
    what a comparison can score on instead of a whole dataset (evaluate held_out_of_job_id)."""
    return (Job.objects.filter(organization=organization, kind__in=FINETUNE_KINDS,
                               state=JobState.SUCCEEDED)
            .filter(Q(test_dataset_version__isnull=False) | Q(test_fraction__gt=0)).order_by("-pk"))


def queue_position(*, job: Job) -> int | None:
    """1 = next. Ahead: same queue, higher priority, or same priority queued earlier."""
    if job.state != JobState.QUEUED:
        return None
    ahead = Job.objects.filter(state=JobState.QUEUED, queue=job.queue).filter(
        Q(priority__lt=job.priority) | Q(priority=job.priority, queued_at__lt=job.queued_at)).count()
    return ahead + 1


def eta(*, job: Job, now=None, estimator=None):
    """When the job should finish and what that rests on (estimates.Eta: `at`,
    None when done or unknown; `basis`, in words). `estimator`: one shared by
    the jobs of a page, so each history is read once."""
    from .estimates import eta as estimate_eta

    return estimate_eta(job=job, now=now, estimator=estimator)


def artifact_get(*, job: Job, name: str) -> JobArtifact:
    artifact = job.artifacts.filter(name=name).first()
    if artifact is None:
        raise NotFound("Artifact not found.")
    return artifact


# --- quote accuracy (operators) -------------------------------------------------------------

QUOTE_ACCURACY_JOBS = 200  # the last N succeeded jobs with a stored quote


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def quote_accuracy(*, last: int = QUOTE_ACCURACY_JOBS) -> list[dict]:
    """The quote error per (device class the job ran on, method) over the last
    `last` succeeded jobs that stored a quote (one query, aggregated here).
    Each row: `jobs` (quoted and metered), `with_history` (quoted from measured
    jobs, not the default — the goal's population), and over those with history:
    `median_abs_error_percent`, `mean_error_percent` (signed: + took longer than
    quoted), `within_15_percent` and `inside_range` (shares, 0–1); `default_jobs`
    and `default_median_abs_error_percent` for the ones quoted from the default."""
    from .estimates import method_of
    from .quote_errors import WITHIN_PERCENT, quote_error

    jobs = (with_usage(Job.objects.filter(state=JobState.SUCCEEDED).exclude(quote={}))
            .only("id", "kind", "state", "method", "spec", "device_class", "quote", "finished_at")
            .order_by("-finished_at", "-id")[:last])
    groups: dict[tuple[str, str], list[dict]] = {}
    for job in jobs:
        error = quote_error(job, actual_seconds=float(job.billed_seconds or 0))
        if error is not None:
            # the estimator's method: a chat LoRA's quotes apart from a classifier LoRA's
            groups.setdefault((job.device_class or "unknown", method_of(job)), []).append(error)
    rows = []
    for (device_class, method), errors in sorted(groups.items()):
        learned = [e for e in errors if e["history_jobs"] > 0]
        defaults = [e for e in errors if e["history_jobs"] == 0]
        signed = [e["error_percent"] for e in learned]
        rows.append({
            "device_class": device_class, "method": method, "jobs": len(errors), "with_history": len(learned),
            "median_abs_error_percent": _median([abs(x) for x in signed]),
            "mean_error_percent": sum(signed) / len(signed) if signed else None,
            "within_15_percent": sum(abs(x) <= WITHIN_PERCENT for x in signed) / len(signed) if signed else None,
            "inside_range": sum(e["within_range"] for e in learned) / len(learned) if learned else None,
            "default_jobs": len(defaults),
            "default_median_abs_error_percent": _median([abs(e["error_percent"]) for e in defaults]),
        })
    return rows
