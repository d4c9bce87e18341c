from __future__ import annotations

import json
from itertools import islice

from django.core.files.storage import default_storage
from django.db.models import Count, QuerySet

from core.errors import ApplicationError, NotFound, field_error

from .models import Dataset, DatasetVersion, Task

PREVIEW_MAX_ROWS = 100
CHAT_TOKEN_STATS_CACHE_SECONDS = 24 * 3600


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
    if kind == "preview" and version.task == Task.CHAT:  # one conversation per row, its messages as JSON
        rows = dataset_version_preview(version=version, split=split, limit=limit)
        header, name = ["messages"], f"preview-{split}"
        body = [[json.dumps(row["messages"], ensure_ascii=False)] for row in rows]
    elif kind == "preview":
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


def tokenizer_unavailable(base_model) -> ApplicationError:
    return ApplicationError(f"The tokenizer of base model '{base_model.slug}' could not be loaded.",
                            code="tokenizer_unavailable", status=503)


TOKEN_COUNTING = 2


def chat_measure_about(base_model) -> dict:
    """What a chat dataset's token statistics say about the model that measured them."""
    return {"base_model": base_model.slug, "base_model_name": base_model.name,
            "chat_template": base_model.chat_template_source or "model",
            "base_model_updated_at": base_model.updated_at.isoformat(),
            # 2: the whitespace after a reply's end marker is no longer counted as trained (as the worker trains).
            "token_counting": TOKEN_COUNTING}


def chat_token_stats(*, version: DatasetVersion, base_model, max_length: int | None = None) -> dict:
    """Token statistics of a chat dataset version with `base_model`'s tokenizer and chat template, each
    conversation cut at `max_length` (default: the model's default_max_length) or the model's context when
    shorter — what a chat job's submission checks and quotes:

    - conversations, mean / p50 / p95 / max tokens per conversation, `histogram`;
    - `over_max_length`, `over_context_length`, `truncated` (cut at `truncated_at`), `tokens_cut`,
      `trained_tokens_cut`, `skipped_after_truncation` (no trained token left), `truncation` (the rule in words);
    - `trained_tokens` (assistant tokens with weight 1) and `trained_tokens_kept` (after the cut), also per
      split: `train` / `validation` → {conversations, tokens, trained_tokens, trained_tokens_kept};
    - `template_errors` ({count, examples: [{where, reason}]}): conversations the template refuses, left out.

    The upload's own statistics are returned when they were made with the same model (unchanged since) and
    max_length; otherwise they are computed from the stored files (cached a day per version, model and
    max_length). 400 naming `dataset_id` / `base_model` when either is not chat; 503 when the tokenizer
    cannot be loaded."""
    from catalog.models import TaskFamily

    from .chat import ChatTokenCounter

    if version.task != Task.CHAT:
        message = (f"{version.dataset.name} v{version.number} is a {version.task.replace('_', ' ')} dataset; chat "
                   "models train on chat datasets (JSONL conversations).")
        raise ApplicationError(message, code="task_mismatch", fields={"dataset_id": [message]})
    if base_model.task_family != TaskFamily.CHAT:
        message = f"{base_model.name} is a {base_model.task_family} model, not a chat model."
        raise ApplicationError(message, code="task_mismatch", fields={"base_model": [message]})
    max_length = int(max_length or base_model.default_max_length)
    about = chat_measure_about(base_model)
    stored = (version.report or {}).get("tokens")
    if stored and stored.get("max_length") == max_length and \
            all(stored.get(k) == v for k, v in about.items() if k != "base_model_name"):
        return stored
    from django.core.cache import cache

    key = (f"lathe:chat-token-stats:{version.pk}:{version.sha256[:16]}:{base_model.pk}:"
           f"{base_model.updated_at.timestamp()}:{max_length}:{TOKEN_COUNTING}")
    cached = cache.get(key)
    if cached is not None:
        return cached
    try:
        tokenizer = base_model.load_tokenizer()
    except Exception:
        raise tokenizer_unavailable(base_model) from None
    counter = ChatTokenCounter(tokenizer, max_length, base_model.context_length)
    for split, name in (("train", version.train_file), ("validation", version.validation_file)):
        with default_storage.open(name, "rb") as fh:
            for number, line in enumerate(fh, start=1):
                counter.add(json.loads(line), split=split, where=f"{split} conversation {number}")
    stats = counter.report(**about)
    cache.set(key, stats, CHAT_TOKEN_STATS_CACHE_SECONDS)
    return stats
