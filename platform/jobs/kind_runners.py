"""The kind table: for each job kind, how its worker spec is built from the
stored job (strictly: an unknown key is an error, never dropped), which
`workers/` entry point runs it, and how its outcome becomes (state, result,
failure reason). Adding a kind = its declaration in workers/kinds.py, its
entry point in workers/, and one row here."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from django.conf import settings

from workers.finetune import run_finetune
from workers.kinds import strict
from workers.reporting import Reporter
from workers.spec import FineTuneSpec

from . import checkpoint_store, estimates
from .cards import card_facts
from .models import Job, JobKind, JobState
from .staging import (extract_model, fetch_dataset, fetch_test_set, fetch_training_rows_of_derived, guard_rows_of_derived,
                      job_folder)

STOP_REASONS = {
    "cancelled": "Cancelled while running; the best checkpoint is kept.",
    "budget": "Stopped at its budget of ${max_cost} (max_cost); the best checkpoint is kept.",
    "spend cap": "Stopped: the organization's monthly spend cap (or free allowance) is reached; the best checkpoint is kept.",
    "paused": "Paused at step {step} with a checkpoint; resume continues from it.",
}


def stop_state(reason: str) -> str:
    """A pause ends the attempt, not the job (lifecycle.job_resume continues it); every other stop cancels."""
    return JobState.PAUSED if reason == "paused" else JobState.CANCELLED


def stop_message(job: Job, reason: str, step: int | None = None) -> str:
    return (STOP_REASONS[reason].replace("{max_cost}", f"{job.max_cost:.2f}" if job.max_cost is not None else "?")
            .replace("{step}", str(step if step is not None else job.step)))


# --- fine-tune ------------------------------------------------------------------

def build_finetune_spec(job: Job, folder: Path) -> FineTuneSpec:
    train_file, validation_file = fetch_dataset(job, folder)
    test_file = fetch_test_set(job, folder)
    # Strict: the stored spec (resolved hyperparameters) is rebuilt as it is; an unknown key is an error.
    return strict(
        FineTuneSpec, job.spec,
        task=job.dataset_version.task, base_model_path=job.base_model.local_path(), train_file=str(train_file),
        validation_file=str(validation_file), labels=list(job.labels),
        test_file=str(test_file) if test_file else None, test_fraction=job.test_fraction or 0.0,
        output_dir=str(folder / "output" / f"attempt-{job.attempts}"), checkpoint_dir=str(folder / "checkpoints"),
        method=job.method, torch_threads=settings.LATHE_WORKER_THREADS or None,
        checkpoint_every_steps=settings.LATHE_CHECKPOINT_EVERY_STEPS, card=card_facts(job),
        world_size=devices_per_job(job),
    )


def devices_per_job(job: Job) -> int:
    """How many devices of this host the job trains on: LATHE_DISTRIBUTED_PROCESSES for classifier fine-tunes
    (torch.distributed, workers/distributed.py); every other kind runs on one."""
    return max(1, settings.LATHE_DISTRIBUTED_PROCESSES) if job.kind == JobKind.FINETUNE else 1


def training_outcome(job: Job, outcome, **extra) -> tuple[str | None, dict, str]:
    """A training loop's result (workers' FineTuneResult, ChatFineTuneResult) as the job's outcome."""
    result = {"best_metrics": outcome.best_metrics, "history": outcome.history, "global_step": outcome.global_step,
              "total_steps": outcome.total_steps, "train_seconds": round(outcome.train_seconds, 3),
              "train_tokens": outcome.train_tokens,
              "examples_per_second": round(outcome.train_examples_seen / outcome.train_seconds, 2) if outcome.train_seconds else None,
              "device": outcome.device, "precision": outcome.precision, **extra}
    if outcome.status == "succeeded":
        return JobState.SUCCEEDED, result, ""
    if outcome.stop_reason in STOP_REASONS:
        return (stop_state(outcome.stop_reason), {**result, "stop_reason": outcome.stop_reason},
                stop_message(job, outcome.stop_reason, step=outcome.global_step))
    return None, result, ""


def finetune_outcome(job: Job, outcome) -> tuple[str | None, dict, str]:
    # test_metrics: the final model on the held-out test set (attached or carved), None without one;
    # refit: the epochs validation chose and the rows the delivered model was trained on.
    return training_outcome(job, outcome, test_metrics=outcome.test_metrics, refit=outcome.refit)


# --- compression (quantize, prune, distill) ----------------------------------------

def build_compression_spec(job: Job, folder: Path):
    from workers.compression.run import CompressionSpec

    train_file, validation_file = fetch_training_rows_of_derived(job, folder)
    # Strict: the stored spec (the kind's declared options, its training phase) is rebuilt as it is.
    stored = dict(job.spec)
    eval_file, seen_by_source, measured_on = validation_file, None, None
    held_out = guard_rows_of_derived(job, folder)
    if held_out is not None:  # the source was refit on the validation split: measured on rows it held out
        (eval_file, measured_on), seen_by_source = held_out, validation_file
    if stored.pop("student_base_model", None):  # resolved by the platform into the catalog model's files
        stored["student_model_path"] = job.base_model.local_path()
    if job.max_accuracy_drop is not None:  # the job's column is the guard (the spec holds the same at submission)
        stored["max_accuracy_drop"] = job.max_accuracy_drop
    return strict(
        CompressionSpec, stored,
        kind=job.kind, source_model_dir=str(extract_model(job, folder)), eval_file=str(eval_file),
        validation_seen_by_source=str(seen_by_source) if seen_by_source else None, measured_on=measured_on,
        train_file=str(train_file), output_dir=str(folder / "output" / f"attempt-{job.attempts}"),
        checkpoint_dir=str(folder / "checkpoints"), task=job.dataset_version.task,
        max_length=estimates.model_max_length(job),
        threads=settings.LATHE_WORKER_THREADS or None, card=card_facts(job))


def run_compression(spec, reporter: Reporter) -> dict:
    from workers.compression.run import run_compression as run  # onnx, pruning: loaded where a compression runs

    return run(spec, reporter)


def compression_outcome(job: Job, report: dict) -> tuple[str | None, dict, str]:
    if "stopped" in report:
        reason = report["stopped"]
        return (stop_state(reason), {"stop_reason": reason}, stop_message(job, reason)) if reason in STOP_REASONS else (None, {}, "")
    guard = report["guard"]
    if not guard["passed"]:
        return JobState.FAILED, {"compression": report}, guard.get("failure") or (  # chat: the worker's wording
            f"Accuracy guard failed: accuracy dropped {guard['accuracy_drop_points']} points, more than the "
            f"{guard['max_accuracy_drop_points']} allowed. The compressed model is kept for inspection.")
    return JobState.SUCCEEDED, {"compression": report}, ""


# --- chat fine-tune (causal LMs) ---------------------------------------------------------

def build_chat_spec(job: Job, folder: Path):
    from catalog.models import ChatTemplateSource
    from workers.spec import ChatFineTuneSpec

    train_file, validation_file = fetch_dataset(job, folder)
    test_file = fetch_test_set(job, folder)
    model = job.base_model
    # A catalog model marked for Lathe's documented default template has none of its own: hand it over.
    template = model.chat_template() if model.chat_template_source == ChatTemplateSource.DEFAULT else None
    return strict(
        ChatFineTuneSpec, job.spec, chat_template=template,
        base_model_path=model.local_path(), train_file=str(train_file), validation_file=str(validation_file),
        test_file=str(test_file) if test_file else None, test_fraction=job.test_fraction or 0.0,
        output_dir=str(folder / "output" / f"attempt-{job.attempts}"), checkpoint_dir=str(folder / "checkpoints"),
        method=job.method, torch_threads=settings.LATHE_WORKER_THREADS or None,
        checkpoint_every_steps=settings.LATHE_CHECKPOINT_EVERY_STEPS, card=card_facts(job),
    )


def run_chat(spec, reporter: Reporter):
    from workers.chat.train import run_chat_finetune  # transformers' causal LMs: loaded where a chat job runs

    return run_chat_finetune(spec, reporter)


def chat_outcome(job: Job, outcome) -> tuple[str | None, dict, str]:
    # train_tokens: the trained (assistant) tokens; input_tokens: every token through the model.
    return training_outcome(
        job, outcome, input_tokens=outcome.input_tokens, generation=outcome.generation, data=outcome.data,
        test_metrics=outcome.test_metrics,
        tokens_per_second=round(outcome.input_tokens / outcome.train_seconds, 1) if outcome.train_seconds else None)


# --- evaluate (the comparison: docs/comparison.md) -----------------------------------------

def build_evaluate_spec(job: Job, folder: Path):
    """Every model of the comparison unpacked (the serving cache, keyed by the archive's sha256) and every
    row of the dataset version next to the job; a model deleted since submission fails the job, named."""
    from workers.serving.evaluate import EvaluateSpec

    from .model_sources import source_get, unpacked
    from .staging import _every_row, _stage, held_out_rows, write_rows

    stored = dict(job.spec)
    models = []
    for entry in stored.pop("models"):
        source = source_get(organization=job.organization, **entry["reference"])
        models.append({"key": source.key, "name": source.name, "folder": str(unpacked(source))})
    version = job.dataset_version
    data = folder / "data" / "evaluate.jsonl"
    if job.source_job_id:  # held_out_of_job_id: the rows that fine-tune held out (its test set, attached or carved)
        if not data.exists():
            write_rows(data, held_out_rows(job.source_job, folder) or [])
    else:
        _stage(data, _every_row(version))
    return strict(EvaluateSpec, stored, models=models, data_file=str(data), task=version.task, labels=list(job.labels),
                  threads=settings.LATHE_WORKER_THREADS or None)


def run_evaluate(spec, reporter: Reporter) -> dict:
    from workers.serving.evaluate import run_evaluate as run

    return run(spec, reporter)


def evaluate_outcome(job: Job, report: dict) -> tuple[str | None, dict, str]:
    """The measurements priced: cost per 1M predictions at the organization's plan rate for the device class
    the job ran on (the ledger's rate for its seconds), and the recommended row."""
    from tenancy.entitlements import entitlements_for
    from workers.serving.evaluate import leaderboard

    if "stopped" in report:
        reason = report["stopped"]
        return (stop_state(reason), {"stop_reason": reason}, stop_message(job, reason)) if reason in STOP_REASONS else (None, {}, "")
    device_class = job.device_class or report["device_class"]
    entitlements = entitlements_for(organization=job.organization)
    rate = entitlements.rate_for(device_class)
    rows = leaderboard(report["models"], accuracy_tolerance=report["accuracy_tolerance"], usd_per_second=rate,
                       device_count=report["device_count"])
    board = {**{k: v for k, v in report.items() if k != "models"}, "device_class": device_class,
             "usd_per_second": str(rate), "plan": entitlements.plan_slug, "metric": rows[0]["metric"], "rows": rows}
    return JobState.SUCCEEDED, {"leaderboard": board}, ""


# --- predict (batch predictions: docs/predictions.md) -------------------------------------

PREDICT_STOPS = {
    "cancelled": "Cancelled after {done} of {rows} rows; a cancelled job writes no predictions file.",
    "budget": "Stopped at its budget of ${max_cost} (max_cost) after {done} of {rows} rows.",
    "spend cap": "Stopped: the organization's monthly spend cap (or free allowance) is reached, after {done} of {rows} rows.",
}


def build_predict_spec(job: Job, folder: Path):
    """The model unpacked (the serving cache, keyed by the archive's sha256) and every row of the dataset
    version next to the job (train then validation split, as the submission counted them); a model deleted
    since submission fails the job, named."""
    from workers.serving.predict import PredictSpec

    from .model_sources import source_get, unpacked
    from .staging import _every_row, _stage, held_out_rows, write_rows

    stored = dict(job.spec)
    source = source_get(organization=job.organization, **stored.pop("model"))
    if job.prediction_input_id:  # an uploaded file, as uploaded (its name tells the reader CSV from JSONL)
        inputs = job.prediction_input
        data = _stage(folder / "data" / f"predict.{inputs.file_format}", [inputs.storage_name])
        task = inputs.task
    else:
        version = job.dataset_version
        data, task = _stage(folder / "data" / "predict.jsonl", _every_row(version)), version.task
    return strict(PredictSpec, stored, model_folder=str(unpacked(source)), input_file=str(data), task=task,
                  output_dir=str(folder / "output" / f"attempt-{job.attempts}"),
                  checkpoint_dir=str(folder / "checkpoints"), threads=settings.LATHE_WORKER_THREADS or None)


def run_predict(spec, reporter: Reporter) -> dict:
    from workers.serving.predict import run_predict as run

    return run(spec, reporter)


def predict_outcome(job: Job, report: dict) -> tuple[str | None, dict, str]:
    if "stopped" in report:
        reason = report["stopped"]
        if reason not in PREDICT_STOPS:
            return None, {}, ""  # the lease was lost: the job is someone else's now
        message = (PREDICT_STOPS[reason].replace("{done}", f"{report['rows_done']:,}").replace("{rows}", f"{report['rows']:,}")
                   .replace("{max_cost}", f"{job.max_cost:.2f}" if job.max_cost is not None else "?"))
        return stop_state(reason), {"stop_reason": reason, "rows_done": report["rows_done"]}, message
    return JobState.SUCCEEDED, {"predictions": report}, ""


# --- the table ------------------------------------------------------------------------

@dataclass(frozen=True)
class KindRunner:
    """build_spec(job, folder) stages the inputs and returns the strict worker
    spec; run(spec, reporter) is the Django-free entry point; outcome(job,
    returned) gives (state, result, failure reason), state None meaning the
    lease was lost: someone else owns the job now, so nothing is written."""

    build_spec: Callable[[Job, Path], Any]
    run: Callable[[Any, Reporter], Any]
    outcome: Callable[[Job, Any], tuple[str | None, dict, str]]

    def __call__(self, job: Job, reporter: Reporter) -> tuple[str | None, dict, str]:
        folder = job_folder(job)
        if checkpoint_store.enabled() and job.attempts > 1:  # a host that may never have seen this job
            restored = checkpoint_store.restore(job, checkpoint_dir=folder / "checkpoints")
            if restored:
                reporter.event(level="info", message=f"Restored from object storage: {', '.join(restored)}.")
        return self.outcome(job, self.run(self.build_spec(job, folder), reporter))


_COMPRESSION = KindRunner(build_compression_spec, run_compression, compression_outcome)
KIND_RUNNERS: dict[str, KindRunner] = {
    JobKind.FINETUNE: KindRunner(build_finetune_spec, run_finetune, finetune_outcome),
    JobKind.QUANTIZE: _COMPRESSION, JobKind.PRUNE: _COMPRESSION, JobKind.DISTILL: _COMPRESSION,
    JobKind.CHAT_FINETUNE: KindRunner(build_chat_spec, run_chat, chat_outcome),
    JobKind.PREDICT: KindRunner(build_predict_spec, run_predict, predict_outcome),
    JobKind.EVALUATE: KindRunner(build_evaluate_spec, run_evaluate, evaluate_outcome),
}
