"""Files of inputs for batch predictions (CSV or JSONL, labels and ids optional), uploaded once and used
by any number of predict jobs: each row is checked at upload with the worker's own reader
(workers/serving/predict.read_inputs), so a job never starts on a file it cannot read; the file is kept
as uploaded and read again by the worker."""
from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from pathlib import Path

from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import ProtectedError

from core.errors import ApplicationError, Conflict, NotFound, field_error
from corpora.limits import check_upload, limits_for
from tenancy.actors import Actor
from tenancy.models import Organization
from workers.serving.predict import InputError, detect_task, read_inputs

from .models import PredictionInput

NAME_MAX_LENGTH = 200
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl"}


def prediction_input_list(*, organization):
    return PredictionInput.objects.filter(organization=organization)


def prediction_input_get(*, organization, input_id) -> PredictionInput:
    found = prediction_input_list(organization=organization).filter(pk=input_id).first()
    if found is None:
        raise NotFound("Input file not found.")
    return found


def prediction_input_upload(*, organization: Organization, actor: Actor, uploaded, name: str = "") -> PredictionInput:
    """Check and keep an input file. 400s name the line and field of the first bad row; 413/403 the size
    limits (the dataset limits of the plan)."""
    if uploaded is None:
        raise field_error("file", "Attach the CSV or JSONL file of inputs as 'file'.", code="required")
    original = Path(uploaded.name or "inputs.jsonl").name
    suffix = Path(original).suffix.lower()
    if suffix not in FORMATS:
        raise field_error("file", f"{original!r}: upload a .csv or .jsonl file (one input a row or line).")
    name = (name or "").strip() or original
    if len(name) > NAME_MAX_LENGTH or "\x00" in name:
        raise field_error("name", f"name: at most {NAME_MAX_LENGTH} characters, no NUL bytes.")
    check_upload(organization=organization, size=uploaded.size,
                 max_file_bytes=limits_for(organization=organization).max_file_bytes, what="The input file")
    workdir = Path(tempfile.mkdtemp(prefix="lathe-inputs-"))
    stored = None
    try:
        path, digest = workdir / f"inputs{'.csv' if FORMATS[suffix] == 'csv' else '.jsonl'}", hashlib.sha256()
        with open(path, "wb") as out:
            for chunk in uploaded.chunks():
                digest.update(chunk)
                out.write(chunk)
        task = detect_task(str(path))
        try:
            rows = read_inputs(str(path), task=task)
        except InputError as exc:
            raise ApplicationError(str(exc), code="invalid_inputs", fields={exc.field: [str(exc)]}) from None
        if not rows:
            raise field_error("file", "The file holds no inputs (a header alone, or only blank lines).")
        with open(path, "rb") as fh:
            stored = default_storage.save(f"prediction-inputs/{organization.pk}/{uuid.uuid4().hex}/{path.name}", File(fh))
        with transaction.atomic():
            created = PredictionInput.objects.create(
                organization=organization, name=name, file_format=FORMATS[suffix], task=task, rows=len(rows),
                labelled_rows=sum(1 for r in rows if r.expected is not None), storage_name=stored,
                size_bytes=os.path.getsize(path), sha256=digest.hexdigest(), created_by=actor.user)
        stored = None  # kept
        return created
    finally:
        if stored:
            default_storage.delete(stored)
        for leftover in workdir.iterdir():
            leftover.unlink()
        workdir.rmdir()


def prediction_input_delete(*, organization: Organization, actor: Actor, input_id) -> None:
    found = prediction_input_get(organization=organization, input_id=input_id)
    try:
        with transaction.atomic():
            storage_name = found.storage_name
            found.delete()
    except ProtectedError:
        raise Conflict("This input file is used by a predict job; it is kept with the job's results.",
                       code="in_use") from None
    default_storage.delete(storage_name)
