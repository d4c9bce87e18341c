from __future__ import annotations

import json
from itertools import islice

from django.core.files.storage import default_storage
from django.db.models import Count, QuerySet

from core.errors import NotFound, field_error

from .models import Dataset, DatasetVersion

PREVIEW_MAX_ROWS = 100


def dataset_list(*, organization) -> QuerySet[Dataset]:
    return (Dataset.objects.filter(organization=organization).annotate(version_count=Count("versions"))
            .prefetch_related("versions").order_by("-created_at", "-id"))


def dataset_get(*, organization, dataset_id) -> Dataset:
    dataset = Dataset.objects.filter(organization=organization, pk=dataset_id).first()
    if dataset is None:
        raise NotFound("Dataset not found.")
    return dataset


def dataset_version_list(*, organization, dataset: Dataset) -> QuerySet[DatasetVersion]:
    return DatasetVersion.objects.filter(organization=organization, dataset=dataset).order_by("-number")


def dataset_version_get(*, organization, dataset: Dataset, number) -> DatasetVersion:
    version = dataset_version_list(organization=organization, dataset=dataset).filter(number=number).first()
    if version is None:
        raise NotFound(f"Version {number} of this dataset not found.")
    return version


def latest_version(*, organization, dataset: Dataset) -> DatasetVersion | None:
    return dataset_version_list(organization=organization, dataset=dataset).first()


def dataset_version_preview(*, version: DatasetVersion, split: str = "train", limit: int = 20) -> list[dict]:
    """The first `limit` normalized rows of a split (values as stored; escaping
    is the renderer's job: the dashboard auto-escapes, the API returns JSON)."""
    if split not in ("train", "validation"):
        raise field_error("split", "split must be 'train' or 'validation'.")
    if not 1 <= limit <= PREVIEW_MAX_ROWS:
        raise field_error("limit", f"limit must be between 1 and {PREVIEW_MAX_ROWS}.")
    name = version.train_file if split == "train" else version.validation_file
    with default_storage.open(name, "rb") as fh:
        return [json.loads(line) for line in islice(fh, limit)]


CSV_EXPORTS = ("preview", "labels", "rejected")


def dataset_version_csv(*, version: DatasetVersion, kind: str, split: str = "train",
                        limit: int = PREVIEW_MAX_ROWS) -> tuple[str, list[str], list[list]]:
    """(file name, header, rows) of a CSV download: the preview of a split, the
    label counts or the rejected rows of the report. Cells are raw here;
    core.csv_export writes them (formula-looking text neutralised)."""
    from .preflight import TASK_FIELDS

    report = version.report or {}
    if kind == "preview":
        fields = list(TASK_FIELDS.get(version.task, ()))
        rows = dataset_version_preview(version=version, split=split, limit=limit)
        extra = [k for row in rows for k in row if k not in fields]
        header = fields + list(dict.fromkeys(extra))
        body = [[row.get(column) for column in header] for row in rows]
        name = f"preview-{split}"
    elif kind == "labels":
        header, name = ["label", "rows"], "labels"
        body = [[label, count] for label, count in report.get("labels", {}).get("counts", {}).items()]
    elif kind == "rejected":
        header, name = ["line", "reason"], "rejected-rows"
        body = [[e.get("line"), e.get("reason")] for e in report.get("rejected", {}).get("examples", [])]
    else:
        raise field_error("kind", f"Unknown export '{kind}'; choose one of {', '.join(CSV_EXPORTS)}.")
    return f"{version.dataset.name}-v{version.number}-{name}.csv", header, body
