"""Per-organization dataset limits: the plan's, under the installation's
ceilings in settings."""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db.models import Sum


@dataclass(frozen=True)
class DatasetLimits:
    max_file_bytes: int
    storage_quota_bytes: int


def limits_for(*, organization) -> DatasetLimits:
    from billing.services import plan_for

    plan = plan_for(organization=organization)
    return DatasetLimits(
        max_file_bytes=min(plan.max_dataset_bytes, settings.LATHE_DATASET_MAX_FILE_BYTES),
        storage_quota_bytes=min(plan.storage_quota_bytes, settings.LATHE_STORAGE_QUOTA_BYTES),
    )


def storage_used(*, organization) -> int:
    """Dataset versions and uploaded models."""
    from registry.models import UploadedModel

    from .models import DatasetVersion

    datasets = DatasetVersion.objects.filter(organization=organization).aggregate(total=Sum("stored_bytes"))["total"] or 0
    models = UploadedModel.objects.filter(organization=organization).aggregate(total=Sum("size_bytes"))["total"] or 0
    return datasets + models
