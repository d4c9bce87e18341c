"""OpenAI-style ids for Lathe rows: `file-<dataset version pk>`, `ftjob-<job pk>`, `ftevent-…`, `ftckpt-…`, and
fine-tuned model names `ft:<base>:<org slug>:<suffix>:<job pk>`. A malformed id is simply not found: the row is
then looked up within the caller's organization, so another organization's id is not found either."""
from __future__ import annotations

import re

from core.errors import NotFound

PREFIXES = {"file": "file-", "job": "ftjob-", "event": "ftevent-", "checkpoint": "ftckpt-"}
_NUMBER = re.compile(r"[1-9][0-9]{0,17}")


def encode(kind: str, pk: int) -> str:
    return f"{PREFIXES[kind]}{pk}"


def decode(kind: str, value, *, what: str) -> int:
    text = str(value or "")
    prefix = PREFIXES[kind]
    if text.startswith(prefix) and _NUMBER.fullmatch(text[len(prefix):]):
        return int(text[len(prefix):])
    raise NotFound(f"No such {what}: {text[:80]!r}.")


def fine_tuned_model_name(*, base_slug: str, organization_slug: str, suffix: str, job_pk: int) -> str:
    return f"ft:{base_slug}:{organization_slug}:{suffix}:{job_pk}"


def job_pk_of_model(value: str) -> int | None:
    """The job pk a ft:… name ends in (the caller checks the rest of the name against that job)."""
    parts = str(value).split(":")
    if len(parts) == 5 and parts[0] == "ft" and _NUMBER.fullmatch(parts[4]):
        return int(parts[4])
    return None
