"""Uploading and deleting customer models. Nothing is kept unless the whole
archive validates; the stored archive holds the validated files only."""
from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import uuid
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import ProtectedError

from core.errors import ApplicationError, Conflict, field_error
from corpora.limits import check_upload, limits_for, storage_used
from corpora.parsing import human_bytes
from tenancy.actors import Actor
from tenancy.models import Organization
from workers.archive import zip_folder

from .models import UploadedModel
from .validation import ALLOWED_SUFFIXES, ModelFileError, check_weight_headers, safe_extract, validate_model_folder

logger = logging.getLogger(__name__)
NAME_MAX_LENGTH = 100


def _refuse(exc: ModelFileError) -> ApplicationError:
    return ApplicationError(exc.message, code=exc.code, status=exc.status, fields={"file": [exc.message]})


def _check_size(*, organization: Organization, size: int) -> None:
    check_upload(organization=organization, size=size, max_file_bytes=settings.LATHE_MODEL_MAX_FILE_BYTES,
                 what="The model archive", limit_phrase="the limit is",
                 free_up="Delete old datasets or models, or upgrade your plan.")


# However large the plan's storage, an archive never unpacks past this multiple
# of the file limit (safetensors weights barely compress: a real model unpacks to
# about its zip's size).
UNPACK_CEILING_FACTOR = 2


def _unpack_allowance(*, organization: Organization) -> dict:
    """How far an upload may unpack: the storage left under the organization's
    plan (the validated model is kept there), under the installation's ceiling."""
    quota, used = limits_for(organization=organization).storage_quota_bytes, storage_used(organization=organization)
    left = max(0, quota - used)
    ceiling = UNPACK_CEILING_FACTOR * settings.LATHE_MODEL_MAX_FILE_BYTES
    if left < ceiling:
        return {"max_unpacked_bytes": left, "limit_code": "storage_quota_exceeded", "limit_status": 403,
                "limit_reason": f"the storage left under your plan ({human_bytes(used)} of {human_bytes(quota)} used; "
                                "delete old datasets or models, or upgrade your plan)"}
    return {"max_unpacked_bytes": ceiling, "limit_code": "file_too_large", "limit_status": 413,
            "limit_reason": f"{UNPACK_CEILING_FACTOR}× the limit per model archive"}


def model_upload(*, organization: Organization, actor: Actor, uploaded, name: str = "") -> UploadedModel:
    """Validate a zipped model folder (config.json, *.safetensors, tokenizer) and keep it."""
    if uploaded is None:
        raise field_error("file", "Attach the zipped model folder as 'file'.", code="required")
    name = (name or "").strip() or Path(uploaded.name or "model").stem
    if len(name) > NAME_MAX_LENGTH:
        raise field_error("name", f"at most {NAME_MAX_LENGTH} characters (this one has {len(name)})")
    _check_size(organization=organization, size=uploaded.size)
    workdir = Path(tempfile.mkdtemp(prefix="lathe-model-"))
    stored = None
    try:
        archive, digest = workdir / "upload.zip", hashlib.sha256()
        with open(archive, "wb") as out:
            for chunk in uploaded.chunks():
                digest.update(chunk)
                out.write(chunk)
        try:
            folder = safe_extract(str(archive), workdir / "unpacked", check_headers=check_weight_headers,
                                  **_unpack_allowance(organization=organization))
            info = validate_model_folder(folder)
        except ModelFileError as exc:
            raise _refuse(exc) from None
        clean = workdir / "clean"
        clean.mkdir()
        for path in folder.iterdir():  # only what a model folder needs; nothing executable travels on
            if path.is_file() and path.name.lower().endswith(ALLOWED_SUFFIXES):
                shutil.copy2(path, clean / path.name)
        packed = zip_folder(str(clean), str(workdir / "model.zip"))
        _check_size(organization=organization, size=Path(packed).stat().st_size)  # what is kept counts, not the upload
        with open(packed, "rb") as fh:
            stored_sha256 = hashlib.file_digest(fh, "sha256").hexdigest()  # what workers check before use
            fh.seek(0)
            stored = default_storage.save(f"models/{organization.pk}/{uuid.uuid4().hex}/model.zip", File(fh))
        with transaction.atomic():
            model = UploadedModel.objects.create(
                organization=organization, name=name, storage_name=stored, size_bytes=Path(packed).stat().st_size,
                sha256=digest.hexdigest(), stored_sha256=stored_sha256, model_type=info.model_type,
                architecture=info.architecture, labels=info.labels,
                num_layers=info.num_layers, hidden_size=info.hidden_size, parameter_count=info.parameter_count,
                max_length=info.max_length, created_by=actor.user)
        stored = None  # kept
        return model
    finally:
        if stored:
            default_storage.delete(stored)
        shutil.rmtree(workdir, ignore_errors=True)


def model_delete(*, organization: Organization, actor: Actor, model_id) -> None:
    from .selectors import uploaded_model_get

    model = uploaded_model_get(organization=organization, model_id=model_id)
    actor.require_admin_or_creator(model.created_by_id, what="a model")
    name = model.storage_name
    try:
        with transaction.atomic():
            model.delete()
    except ProtectedError as exc:
        jobs = sorted({str(obj) for obj in exc.protected_objects})[:5]
        raise Conflict(f"This model is used by {', '.join(jobs)}; it cannot be deleted while they exist.",
                       code="model_in_use") from None
    transaction.on_commit(lambda: default_storage.delete(name))
