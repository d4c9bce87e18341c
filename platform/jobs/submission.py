"""Submission: validate a job request against its kind's declaration
(workers/kinds.py), resolve 'auto', quote, admit (plan, spend cap) and write the
job `queued` — all in one transaction — ringing the doorbell on commit. What
happens to a job afterwards is jobs/lifecycle.py's.

The organization's entitlements (queue, priority, allowed kinds, spend-cap
facts) are read once per submission — or taken from the caller, who read them
for its request — and passed down."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.services import check_can_start_job
from catalog.selectors import base_model_get
from core.errors import Conflict, field_error
from corpora.models import DatasetVersion
from tenancy.actors import Actor
from tenancy.entitlements import Entitlements, entitlements_for
from tenancy.models import Organization

from workers import kinds

from . import estimates, fleet, hyperparameters
from .lifecycle import dispatch
from .models import FINETUNE_KINDS, Job, JobEvent, JobKind, JobState, Method

SUPPORTED_TASKS = ("text_classification", "text_pair_classification")


def _fingerprint(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _dataset_version(*, organization, dataset_id, number: int | None, field: str = "dataset_id") -> DatasetVersion:
    """The organization's dataset version (the latest when no number is given), or a 400 on `field`."""
    versions = DatasetVersion.objects.filter(organization=organization, dataset_id=dataset_id)
    version = versions.filter(number=number).first() if number else versions.order_by("-number").first()
    if version is None:
        raise field_error(field, "No such dataset (or version) in this organization.", code="not_found")
    return version


def _idempotent_replay(organization, idempotency_key: str | None, fingerprint: str) -> Job | None:
    """The job an Idempotency-Key already made with this body; a 409 if the body differs."""
    if not idempotency_key:
        return None
    if len(idempotency_key) > 200:
        raise field_error("Idempotency-Key", "at most 200 characters")
    existing = Job.objects.filter(organization=organization, idempotency_key=idempotency_key).first()
    if existing and existing.request_fingerprint != fingerprint:
        raise Conflict("This Idempotency-Key was used with a different request body.", code="idempotency_key_reused")
    return existing


@dataclass(frozen=True)
class _Started:
    fingerprint: str
    entitlements: Entitlements | None
    replay: Job | None


def _start(*, organization, payload: dict, idempotency_key, dry_run: bool, entitlements,
           device_class: str = "") -> _Started:
    """Every submission's first steps: the body's fingerprint, the job an Idempotency-Key already made with
    it (then nothing else is read), else the entitlements (the caller's, or read here once)."""
    if device_class:  # absent: the fingerprint of older requests holds
        payload = {**payload, "device_class": device_class}
    fingerprint = _fingerprint(payload)
    replay = None if dry_run else _idempotent_replay(organization, idempotency_key, fingerprint)
    if replay:
        return _Started(fingerprint, None, replay)
    return _Started(fingerprint, entitlements or entitlements_for(organization=organization), None)


def _create_queued(*, idempotency_key, fingerprint, organization, entitlements: Entitlements, event: str,
                   dry_run: bool = False, device_class: str = "", **fields) -> tuple[Job, bool]:
    """Write the job `queued` and ring on commit; with `dry_run`, the same job
    unsaved (for quotes), no billing check. `device_class`: the class of worker the job asks for (fleet.py)."""
    fields["requested_device_class"] = fleet.checked_device_class(device_class)
    if fields["requested_device_class"]:
        event += f" It asks for a {fields['requested_device_class']} worker."
    values = dict(organization=organization, queue=queue_of(entitlements), priority=entitlements.priority,
                  max_attempts=settings.LATHE_JOB_MAX_ATTEMPTS, queued_at=timezone.now(),
                  idempotency_key=idempotency_key or None, request_fingerprint=fingerprint, **fields)
    if dry_run:
        return Job(**values), False
    check_can_start_job(organization=organization, kind=fields["kind"], entitlements=entitlements)
    from .quotes import submission_quote  # kept with the job: what POST /jobs/quote answered for this body

    values["quote"] = submission_quote(Job(**values), entitlements=entitlements)
    try:
        with transaction.atomic():
            job = Job.objects.create(**values)
            JobEvent.objects.create(job=job, message=event)
            transaction.on_commit(lambda: dispatch(job_id=job.pk))
    except IntegrityError:  # the same Idempotency-Key raced us
        return _idempotent_replay(organization, idempotency_key, fingerprint), False
    return job, True


def numeric_options() -> list[str]:
    """The compression options given in `options` (prune_method and student_base_model have their own arguments)."""
    return [n for n in kinds.compression_option_names() if n not in ("prune_method", "student_base_model")]


def _compression_options(kind: str, options: dict) -> dict:
    """Type- and range-check the options of one kind against its declaration
    (workers/kinds.py); 400s name the field. An option no kind declares is refused."""
    known = numeric_options()
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise field_error(unknown[0], f"{unknown[0]} is not an option; the options are {', '.join(known)} "
                                      "(and max_accuracy_drop, dataset_id, hyperparameters).")
    declared = kinds.options_of(kinds.KINDS[kind])
    out = {}
    for name in known:
        value = options.get(name)
        if value in (None, ""):
            if name in declared:
                out[name] = kinds.default_of(kinds.KINDS[kind], name)
            continue
        if name not in declared:
            raise field_error(name, f"{name} applies to {' and '.join(kinds.kinds_taking(name))} jobs, not {kind}.")
        meta = declared[name].metadata
        if meta["auto"] and value == "auto":
            out[name] = None  # searched within the guard
            continue
        hint = ' or "auto" (the highest within the accuracy guard)' if meta["auto"] else ""
        problem = hyperparameters.number_problem(value, kind=meta["type"], low=meta["min"], high=meta["max"], hint=hint)
        if problem:
            raise field_error(name, f"{name} {problem}.")
        out[name] = meta["type"](value)
    return out


def _compression_source(*, organization, source_job_id, source_model_id):
    """(job, uploaded model): exactly one of them, the organization's, with a model to compress."""
    from registry.models import UploadedModel

    if (source_job_id is None) == (source_model_id is None):
        raise field_error("source_job_id", "Give source_job_id (an earlier job's model) or source_model_id (an uploaded "
                                           "model), exactly one of them.")
    if source_model_id is not None:
        model = UploadedModel.objects.filter(organization=organization, pk=source_model_id).first()
        if model is None:
            raise field_error("source_model_id", "No such uploaded model in this organization.", code="not_found")
        return None, model
    source = Job.objects.filter(organization=organization, pk=source_job_id).first()
    if source is None:
        raise field_error("source_job_id", "No such job in this organization.", code="not_found")
    if source.state != JobState.SUCCEEDED or not source.artifacts.filter(name="model.zip").exists():
        raise field_error("source_job_id", f"Job {source.pk} has no finished model to compress (it is {source.state}).")
    if source.kind == JobKind.QUANTIZE:
        raise field_error("source_job_id", f"Job {source.pk}'s model is already int8; quantize last in a chain "
                                           "(its source model can be compressed instead).")
    return source, None


def compression_submit(*, organization: Organization, actor: Actor, kind: str, source_job_id=None, source_model_id=None,
                       max_accuracy_drop: float | None = None, dataset_id=None, dataset_version: int | None = None, name: str = "",
                       prune_method: str | None = None, options: dict | None = None, student_base_model: str | None = None,
                       hyperparameters_in: dict | None = None, max_cost=None, idempotency_key: str | None = None,
                       dry_run: bool = False, entitlements: Entitlements | None = None,
                       device_class: str = "") -> tuple[Job, bool]:
    """Compress the model of an earlier succeeded job of any kind but int8
    (chains: fine-tune → distill → prune → quantize) or an uploaded model,
    measured before and after on an evaluation dataset version whose train split
    feeds recovery and distillation (default: the source job's dataset version).
    `entitlements`: those the caller read for this request (else read here, once)."""
    from .models import COMPRESSION_KINDS

    options = dict(options or {})
    if max_accuracy_drop is None:
        max_accuracy_drop = kinds.default_of(kinds.CompressionOptions, "max_accuracy_drop")
    payload = {"kind": kind, "source_job_id": source_job_id, "source_model_id": source_model_id,
               "max_accuracy_drop": max_accuracy_drop, "dataset_id": dataset_id, "dataset_version": dataset_version,
               "name": name, "prune_method": prune_method, "options": options, "student_base_model": student_base_model,
               "hyperparameters": hyperparameters_in or {}, "max_cost": str(max_cost) if max_cost is not None else None}
    started = _start(organization=organization, payload=payload, idempotency_key=idempotency_key, dry_run=dry_run,
                     entitlements=entitlements, device_class=device_class)
    if started.replay:
        return started.replay, False
    fingerprint, entitlements = started.fingerprint, started.entitlements
    if kind not in COMPRESSION_KINDS:
        raise field_error("kind", f"kind must be finetune or one of {', '.join(COMPRESSION_KINDS)}.")
    source, uploaded = _compression_source(organization=organization, source_job_id=source_job_id,
                                           source_model_id=source_model_id)
    if source is not None and source.kind == JobKind.CHAT_FINETUNE and kind != "quantize":
        raise field_error("kind", f"{kind} is not supported for chat models yet; a chat model (job {source.pk}) can be "
                                  "quantized to int8 (kind quantize).")
    guard = kinds.options_of(kinds.CompressionOptions)["max_accuracy_drop"].metadata
    if hyperparameters.number_problem(max_accuracy_drop, kind=float, low=guard["min"], high=guard["max"]):
        raise field_error("max_accuracy_drop", f"Give the largest acceptable accuracy drop in points, "
                                               f"{guard['min']}–{guard['max']}.")
    if len((name or "").strip()) > 100:
        raise field_error("name", "at most 100 characters")
    spec = {"max_accuracy_drop": float(max_accuracy_drop), **_compression_options(kind, options)}
    if kind == "prune":
        declared = kinds.options_of(kinds.PruneOptions)["prune_method"]
        spec["prune_method"] = prune_method or declared.default
        if spec["prune_method"] not in declared.metadata["choices"]:
            raise field_error("prune_method", f"prune_method must be one of {', '.join(declared.metadata['choices'])}.")
        if "sparsity" not in options:
            raise field_error("sparsity", 'Give the share to remove (0.05–0.95), or "auto" for the highest within the guard.')
    elif prune_method:
        raise field_error("prune_method", "prune_method applies to prune jobs only.")
    if student_base_model and kind != "distill":
        raise field_error("student_base_model", "student_base_model applies to distill jobs only.")
    if kind == "distill" and student_base_model and spec.get("student_layers"):
        raise field_error("student_layers", "Give student_layers (cut from the teacher) or student_base_model, not both.")
    if uploaded is not None and dataset_id is None:
        raise field_error("dataset_id", "An uploaded model needs evaluation data: give dataset_id (its validation split "
                                        "is measured; its train split feeds recovery and distillation).", code="required")
    version = source.dataset_version if source else None
    if dataset_id is not None:
        version = _dataset_version(organization=organization, dataset_id=dataset_id, number=dataset_version)
    model_task = source.dataset_version.task if source else uploaded.task
    if version.task not in (*SUPPORTED_TASKS, "chat") or version.task != model_task:
        raise field_error("dataset_id", f"The evaluation data is {version.task}; the model was trained for {model_task}.")
    labels = list(source.labels if source else uploaded.labels)
    if not set(labels) >= set(version.report.get("labels", {}).get("counts", {})):
        raise field_error("dataset_id", "The evaluation data has labels the model was not trained on.")
    trains = kind == "distill" or spec.get("recovery_epochs")
    base_model = source.base_model if source else None
    if student_base_model:
        base_model = base_model_get(slug=student_base_model, field="student_base_model")
        if version.task not in (base_model.supported_tasks or SUPPORTED_TASKS):
            raise field_error("student_base_model", f"{base_model.name} does not support {version.task}.")
        spec["student_base_model"] = base_model.slug
    if trains:
        if not version.train_count:
            raise field_error("dataset_id", "Recovery and distillation train on the dataset's train split, which is empty.")
        requested = hyperparameters.check(hyperparameters_in)
        if any(k in hyperparameters.lora_only() for k in requested):
            raise field_error("hyperparameters", "Compression trains the whole model; LoRA settings do not apply.")
        spec["training"] = hyperparameters.resolve(requested, method=Method.FULL, version=version,
                                                   base_model=base_model or uploaded, student=kind == "distill")
        # The length the model was trained with: the one rule (estimates.trained_max_length) measurement uses too.
        trained_length = estimates.trained_max_length(source) if source else uploaded.max_length
        if requested.get("max_length", "auto") == "auto" and trained_length:
            spec["training"]["max_length"] = trained_length
        if kind == "prune":
            spec["training"]["epochs"] = spec["recovery_epochs"]
    elif hyperparameters_in:
        raise field_error("hyperparameters", "Only jobs that train (distill, or prune with recovery_epochs) take hyperparameters.")
    what = {"quantize": "int8 quantization", "distill": "distillation into "
            + (base_model.name if student_base_model else f"{spec.get('student_layers') or 'half'} of its layers"),
            "prune": f"{spec.get('prune_method')} pruning"
            + (f" to {spec['sparsity']:.0%}" if spec.get("sparsity") else " (highest amount within the guard)")
            + (f" with {spec['recovery_epochs']} recovery epoch(s)" if spec.get("recovery_epochs") else "")}[kind]
    return _create_queued(
        idempotency_key=idempotency_key, fingerprint=fingerprint, organization=organization, entitlements=entitlements,
        device_class=device_class,
        kind=kind,
        name=(name or "").strip() or compression_name(kind=kind, spec=spec, source=source, uploaded=uploaded),
        dataset_version=version, base_model=base_model, method=Method.FULL,
        dry_run=dry_run, max_cost=_max_cost(max_cost),
        source_job=source, source_model=uploaded, max_accuracy_drop=float(max_accuracy_drop), labels=labels,
        requested=payload, spec=spec, created_by=actor.user, created_by_key=actor.api_key,
        event=f"Queued on '{queue_of(entitlements)}': {what} of "
              f"{f'job {source.pk}' if source else f'uploaded model {uploaded.name}'}'s model, "
              f"evaluated on {version.dataset.name} v{version.number}; allowed "
              + (f"perplexity increase {float(max_accuracy_drop)}%." if version.task == "chat"
                 else f"accuracy drop {float(max_accuracy_drop)} points."))


def compression_name(*, kind: str, spec: dict, source: Job | None, uploaded) -> str:
    """A compression job's name when none is given: what, of which model —
    "int8 of sentiment", "neurons prune of job 12", "distillation of my-model"."""
    of = uploaded.name if uploaded is not None else (source.name or f"job {source.pk}")
    what = {"quantize": "int8", "prune": f"{spec.get('prune_method') or 'magnitude'} prune", "distill": "distillation"}[kind]
    name = f"{what} of {of}"
    return name if len(name) <= 100 else name[:99] + "…"


MAX_COMPARED_MODELS = 10


def _declared_options(declaration: type, options: dict, *, what: str) -> dict:
    """A kind's top-level options (its declaration in workers/kinds.py), type- and range-checked; absent: the
    default; an option it does not declare is a 400 naming it."""
    declared = kinds.options_of(declaration)
    unknown = sorted(set(options) - set(declared))
    if unknown:
        raise field_error(unknown[0], f"{unknown[0]} is not an option of {what}; its options are "
                                      f"{', '.join(declared)}.")
    out = {}
    for name, f in declared.items():
        value = options.get(name)
        if value in (None, ""):
            out[name] = kinds.default_of(declaration, name)
            continue
        meta = f.metadata
        problem = hyperparameters.number_problem(value, kind=meta["type"], low=meta["min"], high=meta["max"])
        if problem:
            raise field_error(name, f"{name} {problem}.")
        out[name] = meta["type"](value)
    return out


def _held_out_source(*, organization, held_out_of_job_id) -> Job:
    """The fine-tune whose held-out rows a comparison scores: the organization's, with a test set (attached or
    carved) — the rows no model of its family trained on or was chosen by."""
    if isinstance(held_out_of_job_id, bool) or not isinstance(held_out_of_job_id, int):
        raise field_error("held_out_of_job_id", "held_out_of_job_id must be an integer job id.")
    job = Job.objects.filter(organization=organization, pk=held_out_of_job_id).first()
    if job is None:
        raise field_error("held_out_of_job_id", "No such job in this organization.", code="not_found")
    if job.kind not in FINETUNE_KINDS or not (job.test_dataset_version_id or job.test_fraction):
        raise field_error("held_out_of_job_id", f"Job {job.pk} held no rows out: only a fine-tune submitted with a test "
                                                "set (test_dataset_id or test_fraction) has held-out rows to score.")
    return job


def evaluate_submit(*, organization: Organization, actor: Actor, models, dataset_id=None, dataset_version: int | None = None,
                    options: dict | None = None, name: str = "", max_cost=None, idempotency_key: str | None = None,
                    dry_run: bool = False, entitlements: Entitlements | None = None,
                    device_class: str = "", held_out_of_job_id=None) -> tuple[Job, bool]:
    """The comparison (kind evaluate, docs/comparison.md): 2–10 distinct models of the organization, of one
    family (classifiers, or chat models) and trained for the dataset's task and labels, each scored on every
    row of one labelled dataset version on one worker: quality, latency at batch 1, throughput at batch 32,
    size, and cost per 1M predictions at the plan's rate; the cheapest within `accuracy_tolerance` marked.
    `held_out_of_job_id` instead of a dataset: the rows that fine-tune held out (its attached test set, or the
    test split it carved — staging.held_out_rows), which none of its variants trained on.
    `device_class`: the class of worker every model is measured on (fleet.py), as for every kind."""
    from .model_sources import CHAT, parse_reference, source_get

    options = dict(options or {})
    payload = {"kind": JobKind.EVALUATE, "models": models, "dataset_id": dataset_id, "dataset_version": dataset_version,
               "options": options, "name": name, "max_cost": str(max_cost) if max_cost is not None else None}
    if held_out_of_job_id is not None:  # absent: the fingerprint of older requests holds
        payload["held_out_of_job_id"] = held_out_of_job_id
    started = _start(organization=organization, payload=payload, idempotency_key=idempotency_key, dry_run=dry_run,
                     entitlements=entitlements, device_class=device_class)
    if started.replay:
        return started.replay, False
    fingerprint, entitlements = started.fingerprint, started.entitlements
    if not isinstance(models, list) or not 2 <= len(models) <= MAX_COMPARED_MODELS:
        raise field_error("models", f"models must be a list of 2 to {MAX_COMPARED_MODELS} model references, e.g. "
                                    '[{"job_id": 12}, {"job_id": 14, "artifact": "model-onnx-int8.zip"}].')
    sources = [source_get(organization=organization, field=f"models[{i}]",
                          **parse_reference(value, field=f"models[{i}]")) for i, value in enumerate(models)]
    keys = [s.key for s in sources]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise field_error("models", f"Each model once: {', '.join(repeated)} is given more than once.")
    families = {s.family for s in sources}
    if len(families) > 1:
        raise field_error("models", "Compare classifiers with classifiers and chat models with chat models, "
                                    "not both in one comparison.")
    family = families.pop()
    held_out_of = None
    if held_out_of_job_id is not None:
        if dataset_id not in (None, "") or dataset_version not in (None, ""):
            raise field_error("held_out_of_job_id", "Give dataset_id (a dataset scored whole) or held_out_of_job_id (the "
                                                    "rows a fine-tune held out), not both.")
        held_out_of = _held_out_source(organization=organization, held_out_of_job_id=held_out_of_job_id)
        version = held_out_of.test_dataset_version or held_out_of.dataset_version
    else:
        if dataset_id in (None, ""):
            raise field_error("dataset_id", "Give the labelled dataset every model is scored on (or held_out_of_job_id: "
                                            "the rows a fine-tune held out).", code="required")
        if isinstance(dataset_id, bool) or not isinstance(dataset_id, int):
            raise field_error("dataset_id", "dataset_id must be an integer id.")
        version = _dataset_version(organization=organization, dataset_id=dataset_id, number=dataset_version)
    labels: list[str] = []
    if family == CHAT:
        if version.task != "chat":
            raise field_error("dataset_id", f"Chat models are compared on a chat dataset; this one is {version.task}.")
    else:
        if version.task not in SUPPORTED_TASKS:
            raise field_error("dataset_id", f"Classifiers are compared on labelled text; this dataset is {version.task}.")
        labels = sorted(version.report.get("labels", {}).get("counts", {}))
        for i, source in enumerate(sources):
            if source.task != version.task:
                raise field_error(f"models[{i}]", f"{source.name} was trained for {source.task}; the dataset is "
                                                  f"{version.task}.")
            unknown = sorted(set(labels) - set(source.labels))
            if unknown:
                shown = ", ".join(repr(label) for label in unknown[:5]) + (
                    f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
                raise field_error(f"models[{i}]", f"The dataset has labels {source.name} does not know: {shown}.")
    if not (version.train_count or 0) + (version.validation_count or 0):
        raise field_error("dataset_id", "The dataset version has no rows to score.")
    unknown_options = sorted(set(options) - set(kinds.options_of(kinds.EvaluateOptions)))
    if unknown_options:
        raise field_error(unknown_options[0], f"{unknown_options[0]} is not an option of a comparison; its options "
                                              f"are {', '.join(kinds.options_of(kinds.EvaluateOptions))}.")
    spec = {"models": [{"key": s.key, "name": s.name, "reference": s.reference()} for s in sources],
            **_declared_options(kinds.EvaluateOptions, options, what="a comparison")}
    if len((name or "").strip()) > 100:
        raise field_error("name", "at most 100 characters")
    from .leaderboard import scored_rows_description

    rows = scored_rows_description(version=version, held_out_of=held_out_of)
    default_name = f"Compare {len(sources)} models on {version.dataset.name} v{version.number}" + (
        f" (held out by job {held_out_of.pk})" if held_out_of else "")
    return _create_queued(
        idempotency_key=idempotency_key, fingerprint=fingerprint, organization=organization, entitlements=entitlements,
        kind=JobKind.EVALUATE, dry_run=dry_run, max_cost=_max_cost(max_cost), device_class=device_class,
        name=(name or "").strip() or default_name[:100], dataset_version=version, base_model=None, method=Method.FULL,
        source_job=held_out_of,
        requested=payload, spec=spec, labels=labels, created_by=actor.user, created_by_key=actor.api_key,
        event=f"Queued on '{queue_of(entitlements)}': comparison of {', '.join(s.name for s in sources)} on {rows}; "
              f"the cheapest within {spec['accuracy_tolerance']:g} points of the best is marked.")



PREDICT_TASKS = (*SUPPORTED_TASKS, "chat")


def predict_submit(*, organization: Organization, actor: Actor, model, dataset_id=None, dataset_version: int | None = None,
                   options: dict | None = None, name: str = "", max_cost=None, idempotency_key: str | None = None,
                   dry_run: bool = False, entitlements: Entitlements | None = None,
                   device_class: str = "", inputs_id=None) -> tuple[Job, bool]:
    """Batch predictions (kind predict, docs/predictions.md): one model of the organization (`model`: a
    reference, jobs/model_sources.py) over every row of one dataset version (train and validation splits, in
    that order, as staging stages them); the model's family must fit the data (a classifier of the same task
    for text, a chat model for chat lines). The rows' labels (or the conversations' last assistant messages)
    make the evaluation report."""
    from .model_sources import CHAT, parse_reference, source_get

    options = dict(options or {})
    payload = {"kind": JobKind.PREDICT, "model": model, "dataset_id": dataset_id, "dataset_version": dataset_version,
               "options": options, "name": name, "max_cost": str(max_cost) if max_cost is not None else None}
    if inputs_id is not None:  # absent: the fingerprint of older requests holds
        payload["inputs_id"] = inputs_id
    started = _start(organization=organization, payload=payload, idempotency_key=idempotency_key, dry_run=dry_run,
                     entitlements=entitlements, device_class=device_class)
    if started.replay:
        return started.replay, False
    fingerprint, entitlements = started.fingerprint, started.entitlements
    if model in (None, ""):
        raise field_error("model", 'Give the model to predict with: {"job_id": 12}, {"job_id": 12, "artifact": '
                                   '"model-onnx-int8.zip"} or {"uploaded_model_id": 3}.', code="required")
    source = source_get(organization=organization, field="model", **parse_reference(model, field="model"))
    version, inputs = None, None
    if inputs_id is not None:
        from .prediction_inputs import prediction_input_get

        if dataset_id not in (None, ""):
            raise field_error("inputs_id", "Give dataset_id or inputs_id (an uploaded input file), not both.")
        if isinstance(inputs_id, bool) or not isinstance(inputs_id, int):
            raise field_error("inputs_id", "inputs_id must be an integer id (POST /api/v1/prediction-inputs).")
        inputs = prediction_input_get(organization=organization, input_id=inputs_id)
        task, rows, what = inputs.task, inputs.rows, f"{inputs.name} (uploaded)"
    else:
        if dataset_id in (None, ""):
            raise field_error("dataset_id", "Give the dataset whose rows are predicted, or inputs_id (an uploaded "
                                            "input file).", code="required")
        if isinstance(dataset_id, bool) or not isinstance(dataset_id, int):
            raise field_error("dataset_id", "dataset_id must be an integer id.")
        version = _dataset_version(organization=organization, dataset_id=dataset_id, number=dataset_version)
        task, rows = version.task, (version.train_count or 0) + (version.validation_count or 0)
        what = f"{version.dataset.name} v{version.number}"
    data_field = "inputs_id" if inputs is not None else "dataset_id"
    if task not in PREDICT_TASKS:
        raise field_error(data_field, f"Batch predictions read {', '.join(PREDICT_TASKS)} data; this is {task}.")
    if (source.family == CHAT) != (task == "chat"):
        kind_of = "a chat model (it answers conversations)" if source.family == CHAT else "a classifier (it labels text)"
        raise field_error("model", f"{source.name} is {kind_of}; the data is {task}: predict "
                                   f"{'chat lines' if source.family == CHAT else 'text'} with it, or choose a "
                                   f"{'classifier' if source.family == CHAT else 'chat model'}.")
    if source.family != CHAT and source.task != task:
        raise field_error("model", f"{source.name} was trained for {source.task}; the data is {task}.")
    if not rows:
        raise field_error(data_field, "There are no rows to predict.")
    spec = {"model": source.reference(), **_declared_options(kinds.PredictOptions, options, what="batch predictions")}
    if len((name or "").strip()) > 100:
        raise field_error("name", "at most 100 characters")
    default_name = f"Predictions of {source.name} on {what}"
    source_job = Job.objects.filter(organization=organization, pk=source.job_id).first() if source.job_id else None
    return _create_queued(
        idempotency_key=idempotency_key, fingerprint=fingerprint, organization=organization, entitlements=entitlements,
        kind=JobKind.PREDICT, dry_run=dry_run, max_cost=_max_cost(max_cost), device_class=device_class,
        name=(name or "").strip() or (default_name if len(default_name) <= 100 else default_name[:99] + "…"),
        dataset_version=version, prediction_input=inputs,
        base_model=source_job.base_model if source_job else None, method=Method.FULL,
        source_job=source_job, source_model_id=source.uploaded_model_id, requested=payload, spec=spec,
        labels=list(source.labels), created_by=actor.user, created_by_key=actor.api_key,
        event=f"Queued on '{queue_of(entitlements)}': predictions of {source.name} for every row ({rows:,}) of "
              f"{what}, in chunks of {spec['chunk_rows']:,} rows.")


def queue_of(entitlements: Entitlements) -> str:
    """The queue of the organization's plan, else the installation's default."""
    return entitlements.queue or settings.LATHE_DEFAULT_QUEUE


def _max_cost(value) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        amount = Decimal(str(value))
    except (ArithmeticError, ValueError):
        raise field_error("max_cost", "a number of US dollars, e.g. 5 or 12.50") from None
    if isinstance(value, bool) or not amount.is_finite() or not Decimal("0.01") <= amount <= Decimal("100000"):
        raise field_error("max_cost", "between 0.01 and 100000 US dollars")
    return amount.quantize(Decimal("0.0001"))


def _checked_training(*, method: str, hyperparameters_in: dict | None, declaration: type) -> dict:
    """A fine-tune kind's method and hyperparameters, checked against the kind's declaration; LoRA's
    options only with method lora."""
    if method not in Method.values:
        raise field_error("method", f"method must be one of {', '.join(Method.values)}.")
    requested = hyperparameters.check(hyperparameters_in, declaration=declaration)
    lora_only = hyperparameters.lora_only(declaration)
    if method != Method.LORA and any(k in lora_only and v != "auto" for k, v in requested.items()):
        raise field_error("method", "LoRA hyperparameters were given but method is 'full'.")
    return requested


TEST_FRACTION_RANGE = (0.02, 0.5)


def _validation_set(*, organization, version: DatasetVersion, labels: list[str] | None, validation_dataset_id,
                    validation_dataset_version) -> DatasetVersion | None:
    """A fine-tune's own validation set: another dataset version of the organization (every row of it
    validates; the training version is then trained on whole), or None for the version's own split."""
    if validation_dataset_id in (None, ""):
        if validation_dataset_version not in (None, ""):
            raise field_error("validation_dataset_version", "validation_dataset_version needs validation_dataset_id "
                                                            "(the validation set's dataset).")
        return None
    separate = _dataset_version(organization=organization, dataset_id=validation_dataset_id,
                                number=validation_dataset_version, field="validation_dataset_id")
    if separate.pk == version.pk:
        raise field_error("validation_dataset_id", "The validation set is the training data itself; leave "
                                                   "validation_dataset_id out to use its own validation split.")
    if separate.task != version.task:
        raise field_error("validation_dataset_id", f"The validation set is {separate.task}; the training data is "
                                                   f"{version.task}.")
    unknown = sorted(set(separate.report.get("labels", {}).get("counts", {})) - set(labels or ()))
    if labels is not None and unknown:
        shown = ", ".join(repr(label) for label in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise field_error("validation_dataset_id", f"The validation set has labels the training data does not: {shown}.")
    return separate


def _test_set(*, organization, version: DatasetVersion, labels: list[str] | None, test_dataset_id, test_dataset_version,
              test_fraction, validation: DatasetVersion | None = None) -> tuple[DatasetVersion | None, float | None]:
    """A fine-tune's held-out test set: another dataset version of the organization (every row of it
    scored once by the final model) or a share of the train split carved before training — at most one.
    `labels`: a classifier's (the test set's must be among them); None for chat."""
    if test_dataset_id in (None, "") and test_dataset_version not in (None, ""):
        raise field_error("test_dataset_version", "test_dataset_version needs test_dataset_id (the test set's dataset).")
    if test_fraction in (None, ""):
        test_fraction = None
    else:
        low, high = TEST_FRACTION_RANGE
        problem = hyperparameters.number_problem(test_fraction, kind=float, low=low, high=high)
        if problem:
            raise field_error("test_fraction", f"test_fraction (the share of the train split carved as a test split) {problem}.")
        test_fraction = float(test_fraction)
    if test_dataset_id in (None, ""):
        return None, test_fraction
    if test_fraction is not None:
        raise field_error("test_fraction", "Give test_dataset_id (a test set of its own) or test_fraction (carved from "
                                           "the training file), not both.")
    test = _dataset_version(organization=organization, dataset_id=test_dataset_id, number=test_dataset_version,
                            field="test_dataset_id")
    if test.pk == version.pk:
        raise field_error("test_dataset_id", "The test set is the training data itself; attach other rows "
                                             "(or use test_fraction to carve some from it).")
    if test.task != version.task:
        raise field_error("test_dataset_id", f"The test set is {test.task}; the training data is {version.task}.")
    if validation is not None and test.pk == validation.pk:
        raise field_error("test_dataset_id", "The test set is the validation set, which chooses the checkpoint; "
                                             "a test set must be rows nothing was chosen on.")
    unknown = sorted(set(test.report.get("labels", {}).get("counts", {})) - set(labels or ()))
    if labels is not None and unknown:
        shown = ", ".join(repr(label) for label in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise field_error("test_dataset_id", f"The test set has labels the training data does not: {shown}.")
    if labels is None and not (test.train_count or 0) + (test.validation_count or 0):
        raise field_error("test_dataset_id", "The test set has no conversations.")
    return test, None


def job_submit(*, organization: Organization, actor: Actor, dataset_id, dataset_version: int | None = None,
               base_model: str, method: str = Method.FULL, hyperparameters_in: dict | None = None, name: str = "",
               max_cost=None, idempotency_key: str | None = None, dry_run: bool = False,
               entitlements: Entitlements | None = None, test_dataset_id=None, test_dataset_version: int | None = None,
               test_fraction=None, validation_dataset_id=None,
               validation_dataset_version: int | None = None, device_class: str = "") -> tuple[Job, bool]:
    """Validate, resolve 'auto', write the job `queued`, ring the doorbell on
    commit. Returns (job, created); a repeated Idempotency-Key returns the first job.
    `entitlements`: those the caller read for this request (else read here, once).
    A test set (test_dataset_id [+ test_dataset_version], or test_fraction) is scored once after training;
    a validation set (validation_dataset_id [+ validation_dataset_version]) replaces the version's own split."""
    payload = {"dataset_id": dataset_id, "dataset_version": dataset_version, "base_model": base_model, "method": method,
               "hyperparameters": hyperparameters_in or {}, "name": name,
               "max_cost": str(max_cost) if max_cost is not None else None}
    if test_dataset_id is not None or test_fraction is not None:  # absent: the fingerprint of older requests holds
        payload.update(test_dataset_id=test_dataset_id, test_dataset_version=test_dataset_version,
                       test_fraction=test_fraction)
    if validation_dataset_id is not None:
        payload.update(validation_dataset_id=validation_dataset_id, validation_dataset_version=validation_dataset_version)
    started = _start(organization=organization, payload=payload, idempotency_key=idempotency_key, dry_run=dry_run,
                     entitlements=entitlements, device_class=device_class)
    if started.replay:
        return started.replay, False
    fingerprint, entitlements = started.fingerprint, started.entitlements

    version = _dataset_version(organization=organization, dataset_id=dataset_id, number=dataset_version)
    if version.task not in SUPPORTED_TASKS:
        raise field_error("dataset_id", f"Fine-tuning supports {', '.join(SUPPORTED_TASKS)}; this dataset is {version.task}.")
    model = base_model_get(slug=base_model)
    if version.task not in (model.supported_tasks or SUPPORTED_TASKS):
        raise field_error("base_model", f"{model.name} does not support {version.task}.")
    requested = _checked_training(method=method, hyperparameters_in=hyperparameters_in,
                                  declaration=kinds.FineTuneHyperparameters)
    labels = sorted(version.report.get("labels", {}).get("counts", {}))
    if len(labels) < 2:
        raise field_error("dataset_id", "The dataset has fewer than two labels.")
    if len((name or "").strip()) > 100:
        raise field_error("name", "at most 100 characters")
    validation = _validation_set(organization=organization, version=version, labels=labels,
                                 validation_dataset_id=validation_dataset_id,
                                 validation_dataset_version=validation_dataset_version)
    spec = hyperparameters.resolve(requested, method=method, version=version, base_model=model,
                                   validation_supplied=validation is not None)
    test_version, test_fraction = _test_set(
        organization=organization, version=version, labels=labels, test_dataset_id=test_dataset_id,
        test_dataset_version=test_dataset_version, test_fraction=test_fraction, validation=validation)
    tested = ("" if validation is None else f"; validated on {validation.dataset.name} v{validation.number}") + (
        _tested_on(test_version, test_fraction))

    return _create_queued(
        idempotency_key=idempotency_key, fingerprint=fingerprint, organization=organization, entitlements=entitlements,
        device_class=device_class,
        kind=JobKind.FINETUNE, dry_run=dry_run, max_cost=_max_cost(max_cost),
        name=(name or "").strip(), dataset_version=version, base_model=model, method=method, requested=requested,
        spec=spec, labels=labels, created_by=actor.user, created_by_key=actor.api_key,
        test_dataset_version=test_version, test_fraction=test_fraction, validation_dataset_version=validation,
        event=f"Queued on '{queue_of(entitlements)}': {method} fine-tune of {model.name} on "
              f"{version.dataset.name} v{version.number}{tested}.")



def _tested_on(test_version: DatasetVersion | None, test_fraction: float | None) -> str:
    return (f"; tested on {test_version.dataset.name} v{test_version.number}" if test_version
            else f"; {test_fraction:.0%} of the train split carved as a test split" if test_fraction else "")


def chat_submit(*, organization: Organization, actor: Actor, dataset_id, dataset_version: int | None = None,
                base_model: str, method: str = Method.LORA, hyperparameters_in: dict | None = None, name: str = "",
                max_cost=None, idempotency_key: str | None = None, dry_run: bool = False,
                entitlements: Entitlements | None = None, validation_dataset_id=None,
                validation_dataset_version: int | None = None, test_dataset_id=None,
                test_dataset_version: int | None = None, test_fraction=None,
                device_class: str = "") -> tuple[Job, bool]:
    """A chat fine-tune (causal LM, kind chat_finetune) of a catalog chat model on a
    chat dataset: the hyperparameters checked against their declaration
    (workers/kinds.ChatFineTuneHyperparameters), 'auto' resolved from the model
    and the data's token statistics under the model's chat template
    (workers/chat/hyperparameters.py), then queued like every kind."""
    from corpora.selectors import chat_token_stats
    from workers.chat.hyperparameters import resolve_chat_hyperparameters

    declaration = kinds.ChatFineTuneHyperparameters
    payload = {"kind": JobKind.CHAT_FINETUNE, "dataset_id": dataset_id, "dataset_version": dataset_version,
               "base_model": base_model, "method": method, "hyperparameters": hyperparameters_in or {}, "name": name,
               "max_cost": str(max_cost) if max_cost is not None else None}
    if validation_dataset_id is not None:
        payload.update(validation_dataset_id=validation_dataset_id, validation_dataset_version=validation_dataset_version)
    if test_dataset_id is not None or test_fraction is not None:  # absent: the fingerprint of older requests holds
        payload.update(test_dataset_id=test_dataset_id, test_dataset_version=test_dataset_version,
                       test_fraction=test_fraction)
    started = _start(organization=organization, payload=payload, idempotency_key=idempotency_key, dry_run=dry_run,
                     entitlements=entitlements, device_class=device_class)
    if started.replay:
        return started.replay, False
    fingerprint, entitlements = started.fingerprint, started.entitlements

    version = _dataset_version(organization=organization, dataset_id=dataset_id, number=dataset_version)
    model = base_model_get(slug=base_model)
    if JobKind.CHAT_FINETUNE not in model.job_kinds:
        raise field_error("base_model", f"{model.name} is not a chat model; chat fine-tunes start from one "
                                        "(GET /api/v1/base-models lists them).")
    requested = _checked_training(method=method, hyperparameters_in=hyperparameters_in, declaration=declaration)
    if len((name or "").strip()) > 100:
        raise field_error("name", "at most 100 characters")
    wanted_length = requested.get("max_length")
    stats = chat_token_stats(version=version, base_model=model,
                             max_length=None if wanted_length in (None, "auto") else wanted_length)
    if not version.train_count:
        raise field_error("dataset_id", "The dataset's train split has no conversations.")
    validation = _validation_set(organization=organization, version=version, labels=None,
                                 validation_dataset_id=validation_dataset_id,
                                 validation_dataset_version=validation_dataset_version)
    test_version, test_fraction = _test_set(
        organization=organization, version=version, labels=None, test_dataset_id=test_dataset_id,
        test_dataset_version=test_dataset_version, test_fraction=test_fraction, validation=validation)
    train_conversations = version.train_count + (version.validation_count if validation is not None else 0)
    train_conversations -= round(train_conversations * (test_fraction or 0.0))  # the carved ones leave before training
    spec = resolve_chat_hyperparameters(
        requested, method=method, parameter_count=model.parameter_count, model_type=model.architecture,
        context_length=model.context_length, train_conversations=train_conversations, token_stats=stats,
        catalog_defaults=model.default_hyperparameters)
    if stats.get("trained_tokens") == 0:
        raise field_error("dataset_id", "No assistant message is trained on (every one has weight 0).")

    return _create_queued(
        idempotency_key=idempotency_key, fingerprint=fingerprint, organization=organization, entitlements=entitlements,
        device_class=device_class,
        kind=JobKind.CHAT_FINETUNE, dry_run=dry_run, max_cost=_max_cost(max_cost),
        name=(name or "").strip(), dataset_version=version, base_model=model, method=method, requested=requested,
        spec=spec, labels=[], created_by=actor.user, created_by_key=actor.api_key,
        validation_dataset_version=validation, test_dataset_version=test_version, test_fraction=test_fraction,
        event=f"Queued on '{queue_of(entitlements)}': {method} chat fine-tune of {model.name} on "
              f"{version.dataset.name} v{version.number} ({stats.get('conversations', version.train_count)} "
              f"conversations, {stats.get('trained_tokens', 0):,} trained tokens)"
              + (f"; validated on {validation.dataset.name} v{validation.number}" if validation is not None else "")
              + _tested_on(test_version, test_fraction) + ".")
