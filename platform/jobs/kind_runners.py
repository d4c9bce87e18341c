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
from .staging import extract_model, fetch_dataset, fetch_test_set, job_folder

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
    )


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

    train_file, validation_file = fetch_dataset(job, folder)
    # Strict: the stored spec (the kind's declared options, its training phase) is rebuilt as it is.
    stored = dict(job.spec)
    if stored.pop("student_base_model", None):  # resolved by the platform into the catalog model's files
        stored["student_model_path"] = job.base_model.local_path()
    if job.max_accuracy_drop is not None:  # the job's column is the guard (the spec holds the same at submission)
        stored["max_accuracy_drop"] = job.max_accuracy_drop
    return strict(
        CompressionSpec, stored,
        kind=job.kind, source_model_dir=str(extract_model(job, folder)), eval_file=str(validation_file),
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
    model = job.base_model
    # A catalog model marked for Lathe's documented default template has none of its own: hand it over.
    template = model.chat_template() if model.chat_template_source == ChatTemplateSource.DEFAULT else None
    return strict(
        ChatFineTuneSpec, job.spec, chat_template=template,
        base_model_path=model.local_path(), train_file=str(train_file), validation_file=str(validation_file),
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
        tokens_per_second=round(outcome.input_tokens / outcome.train_seconds, 1) if outcome.train_seconds else None)


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
}
