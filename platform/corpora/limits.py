"""Per-organization dataset limits: the plan's (its entitlements), under the
installation's ceilings in settings."""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db.models import Sum

from core.errors import ApplicationError
from tenancy.entitlements import Entitlements, entitlements_for

from .parsing import human_bytes


@dataclass(frozen=True)
class DatasetLimits:
    max_file_bytes: int
    storage_quota_bytes: int


def limits_for(*, organization, entitlements: Entitlements | None = None) -> DatasetLimits:
    """`entitlements`: those already read for this request, if any."""
    entitlements = entitlements or entitlements_for(organization=organization)
    return DatasetLimits(
        max_file_bytes=min(entitlements.max_dataset_bytes, settings.LATHE_DATASET_MAX_FILE_BYTES),
        storage_quota_bytes=min(entitlements.storage_quota_bytes, settings.LATHE_STORAGE_QUOTA_BYTES),
    )


def storage_used(*, organization) -> int:
    """Dataset versions, uploaded models and prediction input files (all the organization's uploads)."""
    from django.apps import apps

    from registry.models import UploadedModel

    # jobs sits above corpora (it imports it): its uploads are summed by model name, not imported.
    PredictionInput = apps.get_model("jobs", "PredictionInput")

    from .models import DatasetVersion

    datasets = DatasetVersion.objects.filter(organization=organization).aggregate(total=Sum("stored_bytes"))["total"] or 0
    models = UploadedModel.objects.filter(organization=organization).aggregate(total=Sum("size_bytes"))["total"] or 0
    inputs = PredictionInput.objects.filter(organization=organization).aggregate(total=Sum("size_bytes"))["total"] or 0
    return datasets + models + inputs


# Multipart overhead allowed above the file-size limit before a body is read.
MULTIPART_SLACK_BYTES = 1_000_000


def _too_large(message: str) -> ApplicationError:
    return ApplicationError(message, code="file_too_large", status=413, fields={"file": ["File too large."]})


def refuse_oversized_body(request, *, limit: int, limit_phrase: str = "the limit per file is") -> None:
    """413 before an upload's body is read, from its declared length."""
    declared = int(request.META.get("CONTENT_LENGTH") or 0)
    if declared > limit + MULTIPART_SLACK_BYTES:
        raise _too_large(f"The upload is {human_bytes(declared)}; {limit_phrase} {human_bytes(limit)}.")


def check_upload(*, organization, size: int, max_file_bytes: int, what: str = "The file",
                 limit_phrase: str = "the limit per file is",
                 free_up: str = "Delete old dataset versions or upgrade your plan.",
                 entitlements: Entitlements | None = None) -> None:
    """413 over the per-file limit, 403 over the organization's storage quota
    (datasets and uploaded models share it)."""
    if size > max_file_bytes:
        raise _too_large(f"{what} is {human_bytes(size)}; {limit_phrase} {human_bytes(max_file_bytes)}.")
    quota = limits_for(organization=organization, entitlements=entitlements).storage_quota_bytes
    used = storage_used(organization=organization)
    if used + size > quota:
        raise ApplicationError(
            f"Storage quota reached: {human_bytes(used)} of {human_bytes(quota)} used; this upload needs "
            f"{human_bytes(size)} more. {free_up}",
            code="storage_quota_exceeded", status=403, fields={"file": ["Storage quota reached."]})
