"""Dataset uploads and deletes (keyword-only). An upload is parsed, validated
and reported on before anything is kept; a failure of any kind leaves no row and
no file behind."""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass

from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Max, ProtectedError

from core.errors import ApplicationError, Conflict, field_error
from tenancy.actors import Actor
from tenancy.models import Organization

from . import parsing
from .limits import check_upload, limits_for
from .models import Dataset, DatasetVersion, Task
from .preflight import ChatMeasure, PreflightOptions, run_preflight
from .selectors import chat_measure_about, tokenizer_unavailable

logger = logging.getLogger(__name__)
DATASET_NAME_MAX_LENGTH = 100


def _file_error(exc: parsing.DatasetFileError) -> ApplicationError:
    return ApplicationError(exc.message, code=exc.code, status=exc.status, fields={exc.field: [exc.message]})


def _check_size(*, organization: Organization, size: int) -> None:
    check_upload(organization=organization, size=size, max_file_bytes=limits_for(organization=organization).max_file_bytes)


class _HashingReader:
    """Hashes the upload's bytes as the parser streams them, so the file is read once for both."""

    def __init__(self, raw):
        self.raw, self.digest = raw, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.digest.update(data)
        return data

    def hexdigest(self) -> str:
        for _ in iter(lambda: self.read(1 << 20), b""):
            pass  # whatever the parser did not need (normally nothing) still counts
        return self.digest.hexdigest()


@dataclass
class UploadCheck:
    """A preflight whose version was not kept: a dry run, or an upload held
    until the user confirms an encoding that was guessed (`held`)."""

    original_filename: str
    report: dict
    preview: list[dict]  # the first accepted rows, as they would be stored
    held: bool = False

    @property
    def encoding(self) -> str:
        return self.report["encoding"]

    @property
    def encoding_detection(self) -> dict:
        return self.report["encoding_detection"]

    @property
    def encoding_confidence(self) -> str:
        return self.encoding_detection["confidence"]


def _clean_options(*, task, column_mapping, validation_fraction, seed, max_length) -> PreflightOptions:
    if task and task not in Task.values:
        raise field_error("task", f"Unknown task '{task}'; choose one of {', '.join(Task.values)}.")
    if not (0 < float(validation_fraction) < 0.5):
        raise field_error("validation_fraction", "validation_fraction must be between 0 and 0.5 (exclusive).")
    if not (8 <= int(max_length) <= 8192):
        raise field_error("max_length", "max_length must be between 8 and 8192 tokens.")
    return PreflightOptions(task=task or None, column_mapping=dict(column_mapping or {}),
                            validation_fraction=float(validation_fraction), seed=int(seed), max_length=int(max_length))


def _chat_measure(*, base_model, max_length_given: bool) -> ChatMeasure:
    """How a chat upload is measured: with the chosen base model when it is a chat model, else with the
    catalog's default chat model (tokenizer only: cheap, cached). Without one, lengths are in words."""
    from catalog.models import TaskFamily
    from catalog.selectors import default_base_model

    chosen = base_model if base_model is not None and base_model.task_family == TaskFamily.CHAT else None
    model = chosen or default_base_model(task_family=TaskFamily.CHAT)
    warnings = []
    if base_model is not None and chosen is None:
        warnings.append(f"{base_model.name} (base_model) is a {base_model.task_family} model; this chat dataset was "
                        + (f"measured with {model.name}, the catalog's chat model." if model else "measured in words."))
    if model is None:
        return ChatMeasure(warnings=warnings, unavailable="the catalog has no chat model yet: token statistics are "
                                                          "computed when a chat job is submitted")
    try:
        tokenizer = model.load_tokenizer()
    except Exception:
        logger.exception("Tokenizer of %s failed to load", model.slug)
        if chosen is not None:
            raise tokenizer_unavailable(model) from None
        return ChatMeasure(warnings=warnings, unavailable=f"the tokenizer of {model.slug} could not be loaded")
    return ChatMeasure(tokenizer=tokenizer, context_length=model.context_length, about=chat_measure_about(model),
                       max_length=None if max_length_given else model.default_max_length, warnings=warnings)


def dataset_upload(
    *, organization: Organization, actor: Actor, uploaded, name: str | None = None, dataset: Dataset | None = None,
    task: str | None = None, column_mapping: dict | None = None, base_model=None, max_length: int | None = None,
    validation_fraction: float = 0.1, seed: int = 13, encoding: str | None = None, dry_run: bool = False,
    hold_guessed_encoding: bool = False,
) -> DatasetVersion | UploadCheck:
    """Validate `uploaded` (a Django UploadedFile) and keep it as a new version of
    `dataset`, or of a new dataset called `name`.

    `encoding` names the file's encoding (a Python codec) instead of detecting
    it. With `dry_run` nothing is kept: the result is an UploadCheck with the
    report and the first rows as they would be stored. With
    `hold_guessed_encoding`, an encoding detected with less than high
    confidence is not kept either (an UploadCheck with held=True): the user
    looks at the preview and sends the file again naming the encoding."""
    try:
        original_name = parsing.check_filename(uploaded.name or "")
        info = parsing.detect_format(original_name)
        encoding = parsing.check_encoding(encoding) if (encoding or "").strip() else None
    except parsing.DatasetFileError as exc:
        raise _file_error(exc) from None
    name = (name or "").strip() or original_name.split(".")[0][:DATASET_NAME_MAX_LENGTH]
    if len(name) > DATASET_NAME_MAX_LENGTH:
        raise field_error("name", f"Dataset names are at most {DATASET_NAME_MAX_LENGTH} characters (this one has {len(name)}).")
    if dataset is not None and task and task != dataset.task:
        raise field_error("task", f"This dataset is for {dataset.task}; a new version cannot change the task.")
    max_length_given = bool(max_length)
    max_length = max_length or (base_model.default_max_length if base_model else 128)
    options = _clean_options(task=task or (dataset.task if dataset else None), column_mapping=column_mapping,
                             validation_fraction=validation_fraction, seed=seed, max_length=max_length)
    _check_size(organization=organization, size=uploaded.size)

    tokenizer = None
    if base_model is not None:
        try:
            tokenizer = base_model.load_tokenizer()
        except Exception as exc:  # a broken catalog entry is the operator's problem, reported clearly
            logger.exception("Tokenizer of %s failed to load", base_model.slug)
            raise ApplicationError(f"The tokenizer of base model '{base_model.slug}' could not be loaded ({type(exc).__name__}).",
                                   code="tokenizer_unavailable", status=503) from None
    measured_with = {}

    def chat_measure() -> ChatMeasure:
        measure = _chat_measure(base_model=base_model, max_length_given=max_length_given)
        measured_with["slug"] = measure.about.get("base_model")
        return measure

    workdir = tempfile.mkdtemp(prefix="lathe-preflight-")
    saved: list[str] = []
    try:
        try:
            hashing = _HashingReader(uploaded)
            text = parsing.open_text(hashing, info, max_decompressed_bytes=limits_for(organization=organization).max_file_bytes * 10,
                                     encoding=encoding)
            result = run_preflight(text, info, options, workdir, tokenizer=tokenizer,
                                   tokenizer_name=base_model.slug if base_model else None, chat_measure=chat_measure)
        except parsing.DatasetFileError as exc:
            raise _file_error(exc) from None
        sha256 = hashing.hexdigest()
        stored_bytes = uploaded.size + os.path.getsize(result.train_path) + os.path.getsize(result.validation_path)
        _check_size(organization=organization, size=stored_bytes)
        held = hold_guessed_encoding and result.report["encoding_detection"]["needs_confirmation"]
        if dry_run or held:
            return UploadCheck(original_filename=original_name, report=result.report, preview=result.head,
                               held=bool(held and not dry_run))

        folder = f"datasets/{organization.pk}/{uuid.uuid4().hex}"
        extension = "." + original_name.lower().split(".", 1)[1] if "." in original_name else ""
        uploaded.seek(0)
        saved.append(default_storage.save(f"{folder}/source{extension}", File(uploaded)))
        for path in (result.train_path, result.validation_path):
            with open(path, "rb") as fh:
                saved.append(default_storage.save(f"{folder}/{os.path.basename(path)}", File(fh)))

        if result.report["task"] == Task.CHAT:  # the version names the model its tokens were counted with
            from catalog.models import BaseModel

            base_model = BaseModel.objects.filter(slug=measured_with.get("slug")).first() if measured_with.get("slug") else None
        with transaction.atomic():
            Organization.objects.select_for_update().get(pk=organization.pk)  # serializes quota and numbering
            _check_size(organization=organization, size=stored_bytes)
            if dataset is None:
                dataset = Dataset.objects.create(organization=organization, name=name, task=result.report["task"],
                                                 created_by=actor.user)
            number = (dataset.versions.aggregate(m=Max("number"))["m"] or 0) + 1
            version = DatasetVersion.objects.create(
                dataset=dataset, organization=organization, number=number, original_filename=original_name,
                source_file=saved[0], train_file=saved[1], validation_file=saved[2], format=info.format,
                compressed=info.compressed, encoding=info.encoding, sha256=sha256, size_bytes=uploaded.size,
                stored_bytes=stored_bytes, task=result.report["task"], column_mapping=result.report["column_mapping"],
                base_model=base_model, max_length=options.max_length, row_count=result.report["rows"]["accepted"],
                rejected_count=result.report["rows"]["rejected"], train_count=result.train_count,
                validation_count=result.validation_count, label_count=result.report["labels"]["count"],
                report=result.report, created_by=actor.user,
            )
            dataset.save(update_fields=["updated_at"])
        saved = []  # committed: the files now belong to the row
        return version
    finally:
        for stored_name in saved:
            default_storage.delete(stored_name)
        shutil.rmtree(workdir, ignore_errors=True)


def _delete_versions(versions: list[DatasetVersion]) -> None:
    names = [n for v in versions for n in v.stored_names]
    try:
        with transaction.atomic():
            for version in versions:
                version.delete()
    except ProtectedError as exc:
        users = sorted({str(obj) for obj in exc.protected_objects})[:5]
        raise Conflict(f"This dataset version is used by {', '.join(users)}; it cannot be deleted while they exist.",
                       code="dataset_in_use") from None
    transaction.on_commit(lambda: [default_storage.delete(n) for n in names])


@transaction.atomic
def dataset_version_delete(*, organization: Organization, actor: Actor, dataset_id, number) -> None:
    from .selectors import dataset_get, dataset_version_get

    dataset = dataset_get(organization=organization, dataset_id=dataset_id)
    version = dataset_version_get(organization=organization, dataset=dataset, number=number)
    actor.require_admin_or_creator(version.created_by_id, what="a dataset")
    _delete_versions([version])
    if not dataset.versions.exists():
        dataset.delete()


@transaction.atomic
def dataset_delete(*, organization: Organization, actor: Actor, dataset_id) -> None:
    from .selectors import dataset_get

    dataset = dataset_get(organization=organization, dataset_id=dataset_id)
    actor.require_admin_or_creator(dataset.created_by_id, what="a dataset")
    _delete_versions(list(dataset.versions.all()))
    dataset.delete()
