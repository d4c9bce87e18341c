"""Writes for /v1/ (keyword-only): an upload becomes a chat dataset version, a create becomes a chat fine-tune
(jobs.submission.chat_submit) with its OpenAI-only fields kept beside it, a model delete removes artifacts."""
from __future__ import annotations

import re

from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from core.errors import ApplicationError, PermissionDenied
from jobs.models import JobArtifact

from . import ids, selectors
from .errors import openai_param
from .models import FineTuningRequest

MIGRATION_GUIDE = "docs/openai-migration.md"
OPENAI_MODEL = re.compile(r"(gpt-|ft:|o[0-9]|babbage|davinci|chatgpt)", re.I)
SUFFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")
MAX_MULTIPLIER = 100  # × the auto rate (2e-4 for LoRA up to 1B parameters): within the declaration's 0.1
HYPERPARAMETERS = ("n_epochs", "batch_size", "learning_rate_multiplier")
CREATE_FIELDS = ("model", "training_file", "validation_file", "suffix", "seed", "metadata", "method",
                 "hyperparameters", "integrations")


def _error(message: str, *, param: str, code: str = "invalid_value", status: int = 400) -> ApplicationError:
    error = ApplicationError(message, code=code, fields={param: [message]}, status=status)
    error.openai_param = param
    return error


def file_create(*, organization, actor, uploaded, purpose):
    from corpora.services import dataset_upload

    if purpose != selectors.PURPOSE:
        raise _error(f"purpose must be 'fine-tune' on Lathe (got {str(purpose)[:40]!r}); other purposes are not supported.",
                     param="purpose")
    if uploaded is None:
        raise _error("Send the file as the multipart field 'file'.", param="file", code="required")
    # OpenAI refuses a file with bad lines rather than training on the rest: a dry run first, so nothing is kept.
    check = dataset_upload(organization=organization, actor=actor, uploaded=uploaded, task="chat", dry_run=True)
    rejected = check.report.get("rejected") or {}
    if check.report.get("rows", {}).get("rejected"):
        first = "; ".join(f"line {e.get('line')}: {e.get('reason')}" for e in (rejected.get("examples") or [])[:3]
                          if isinstance(e, dict))
        raise _error(f"{check.report['rows']['rejected']} line(s) of the file are not valid chat examples: "
                     f"{first or 'see the preflight report'}. Fix them and upload again.", param="file", code="invalid_file")
    uploaded.seek(0)
    version = dataset_upload(organization=organization, actor=actor, uploaded=uploaded, task="chat")
    return version


def file_delete(*, organization, actor, file_id) -> str:
    from corpora.services import dataset_version_delete

    version = selectors.file_get(organization=organization, file_id=file_id)
    dataset_version_delete(organization=organization, actor=actor, dataset_id=version.dataset_id, number=version.number)
    return ids.encode("file", version.pk)


def _unknown_model(model) -> ApplicationError:
    available = ", ".join(selectors.base_chat_models().values_list("slug", flat=True)) or "none"
    said = str(model)[:80]
    why = (f"{said!r} is an OpenAI model; Lathe fine-tunes open models you can download." if OPENAI_MODEL.match(said)
           else f"{said!r} is not a base chat model of Lathe.")
    return _error(f"{why} Available base models: {available}. See {MIGRATION_GUIDE}.", param="model", code="model_not_found")


def _hyperparameters(data: dict) -> tuple[dict, str]:
    method = data.get("method")
    legacy = data.get("hyperparameters")
    path = "hyperparameters"
    chosen = {}
    if method is not None:
        if not isinstance(method, dict):
            raise _error("method must be an object such as {'type': 'supervised'}.", param="method")
        kind = method.get("type")
        if kind != "supervised":
            raise _error(f"method.type {str(kind)[:40]!r} is not supported on Lathe: only 'supervised'.", param="method.type")
        unknown = sorted(set(method) - {"type", "supervised"})
        if unknown:
            raise _error(f"method does not take {', '.join(map(str, unknown))[:200]} on Lathe.", param=f"method.{unknown[0]}")
        supervised = method.get("supervised") or {}
        if not isinstance(supervised, dict) or not isinstance(supervised.get("hyperparameters") or {}, dict):
            raise _error("method.supervised must be an object with an object 'hyperparameters'.", param="method.supervised")
        chosen = supervised.get("hyperparameters") or {}
        path = "method.supervised.hyperparameters"
        if legacy:
            raise _error("Give hyperparameters either at the top level or in method.supervised, not both.", param="hyperparameters")
    elif legacy is not None:
        if not isinstance(legacy, dict):
            raise _error("hyperparameters must be an object.", param="hyperparameters")
        chosen = legacy
    unknown = sorted(set(chosen) - set(HYPERPARAMETERS))
    if unknown:
        raise _error(f"Unknown hyperparameter {str(unknown[0])[:40]!r}; these are: {', '.join(HYPERPARAMETERS)}.",
                     param=f"{path}.{str(unknown[0])[:40]}")
    for name, value in chosen.items():
        kind = float if name == "learning_rate_multiplier" else int
        ok = value == "auto" or (isinstance(value, (int, float)) and not isinstance(value, bool)
                                 and (kind is float or float(value).is_integer()) and value > 0)
        if not ok:
            raise _error(f"{name} must be 'auto' or a positive {'number' if kind is float else 'integer'}.", param=f"{path}.{name}")
        if name == "learning_rate_multiplier" and value != "auto" and value > MAX_MULTIPLIER:
            raise _error(f"learning_rate_multiplier must be at most {MAX_MULTIPLIER}.", param=f"{path}.{name}")
    return dict(chosen), path


def _check_metadata(metadata):
    if metadata is None:
        return None
    if not isinstance(metadata, dict) or len(metadata) > 16:
        raise _error("metadata must be an object of at most 16 string values.", param="metadata")
    for key, value in metadata.items():
        selectors.check_metadata_key(key, field="metadata")
        if not isinstance(value, str) or len(value) > 512:
            raise _error(f"metadata[{key}] must be a string of at most 512 characters.", param=f"metadata.{key}")
    return metadata


def fine_tuning_job_create(*, organization, actor, data, idempotency_key: str | None = None, entitlements=None):
    """(Job, created) from an OpenAI create body. Every refusal names OpenAI's parameter."""
    from catalog.models import BaseModel
    from jobs.submission import chat_submit

    if not isinstance(data, dict):
        raise _error("The body must be a JSON object.", param="body")
    unknown = sorted(set(data) - set(CREATE_FIELDS))
    if unknown:
        raise _error(f"Unknown parameter {str(unknown[0])[:40]!r}; Lathe takes {', '.join(CREATE_FIELDS)}.",
                     param=str(unknown[0])[:40], code="unknown_parameter")
    for required in ("model", "training_file"):
        if not isinstance(data.get(required), str) or not data[required]:
            raise _error(f"{required} is required (a string).", param=required, code="required")
    validation_file = data.get("validation_file")
    if validation_file not in (None, "") and not isinstance(validation_file, str):
        raise _error("validation_file must be a file id (a string).", param="validation_file")
    model = data["model"]
    base = BaseModel.objects.filter(slug=model, is_active=True).first()
    if base is None or base.task_family != "chat":
        raise _unknown_model(model)
    try:
        version = selectors.file_get(organization=organization, file_id=data["training_file"])
    except ApplicationError:
        raise _error(f"training_file {str(data['training_file'])[:80]!r} is not one of your fine-tune files.",
                     param="training_file", code="invalid_training_file") from None
    validation = None
    if validation_file:
        try:
            validation = selectors.file_get(organization=organization, file_id=validation_file)
        except ApplicationError:
            raise _error(f"validation_file {validation_file[:80]!r} is not one of your fine-tune files.",
                         param="validation_file", code="invalid_validation_file") from None
        if validation.pk == version.pk:
            raise _error("validation_file is the training_file; give other conversations to validate on (or leave it "
                         "out: 10% of training_file is then held back for validation).", param="validation_file")
    suffix = data.get("suffix") or ""
    if not isinstance(suffix, str) or (suffix and not SUFFIX.fullmatch(suffix)):
        raise _error("suffix is 1 to 40 letters, digits, '-' or '_'.", param="suffix")
    seed = data.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= 2**31 - 1):
        raise _error("seed must be an integer between 0 and 2147483647.", param="seed")
    metadata = _check_metadata(data.get("metadata"))
    integrations = data.get("integrations") or []
    if not isinstance(integrations, list):
        raise _error("integrations must be a list.", param="integrations")
    wanted, path = _hyperparameters(data)

    hyperparameters = {}
    if wanted.get("n_epochs", "auto") != "auto":
        hyperparameters["epochs"] = int(wanted["n_epochs"])
    if wanted.get("batch_size", "auto") != "auto":
        hyperparameters["batch_size"] = int(wanted["batch_size"])
    if seed is not None:
        hyperparameters["seed"] = seed

    def submit(extra: dict, *, dry_run: bool):
        try:
            return chat_submit(organization=organization, actor=actor, dataset_id=version.dataset_id,
                               dataset_version=version.number, base_model=base.slug, method="lora",
                               hyperparameters_in={**hyperparameters, **extra}, name=suffix,
                               idempotency_key=None if dry_run else idempotency_key, dry_run=dry_run,
                               entitlements=entitlements,
                               validation_dataset_id=validation.dataset_id if validation else None,
                               validation_dataset_version=validation.number if validation else None)
        except ApplicationError as exc:
            field = next(iter(exc.fields), None)
            param = openai_param(field)
            if param and param.startswith("hyperparameters.") and path != "hyperparameters":
                param = f"{path}.{param.split('.', 1)[1]}"
            exc.openai_param = param
            raise

    # The multiplier scales the learning rate 'auto' chooses for this model and data: read by a dry run when a
    # multiplier is given, else from the job itself (its rate is then the auto one).
    extra, base_rate = {}, None
    multiplier = wanted.get("learning_rate_multiplier", "auto")
    if multiplier != "auto":
        base_rate = submit({}, dry_run=True)[0].spec.get("learning_rate")
        extra["learning_rate"] = base_rate * float(multiplier)
    with transaction.atomic():
        job, created = submit(extra, dry_run=False)
        base_rate = base_rate or job.spec.get("learning_rate")
        FineTuningRequest.objects.get_or_create(job=job, defaults=dict(
            suffix=suffix, metadata=metadata, seed=seed, requested_hyperparameters=wanted, learning_rate_base=base_rate,
            integrations=integrations))
    return job, created


@transaction.atomic
def fine_tuned_model_delete(*, organization, actor, model_id: str) -> str:
    """Deletes a fine-tuned model's artifacts (weights, adapter, report); the job and its history stay."""
    if selectors.base_chat_models().filter(slug=model_id).exists():
        raise PermissionDenied("Base models belong to the catalog and cannot be deleted.")
    job = selectors.fine_tuned_job_get(organization=organization, model_id=model_id)
    actor.require_admin_or_creator(job.created_by_id, what="a fine-tuned model")
    artifacts = list(JobArtifact.objects.filter(job=job))
    names = [a.storage_name for a in artifacts]
    JobArtifact.objects.filter(pk__in=[a.pk for a in artifacts]).delete()
    request, _ = FineTuningRequest.objects.get_or_create(job=job)
    request.model_deleted_at = timezone.now()
    request.save(update_fields=["model_deleted_at"])
    transaction.on_commit(lambda: [default_storage.delete(n) for n in names])
    return model_id
