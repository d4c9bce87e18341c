from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from core.models import TimeStampedModel


class Task(models.TextChoices):
    TEXT_CLASSIFICATION = "text_classification", "Text classification (text, label)"
    TEXT_PAIR_CLASSIFICATION = "text_pair_classification", "Text-pair classification (text_a, text_b, label)"
    TOKEN_CLASSIFICATION = "token_classification", "Token classification (tokens, tags)"
    CHAT = "chat", "Chat (JSONL conversations: messages, or prompt and completion)"


class Dataset(TimeStampedModel):
    """A named dataset of an organization; its content lives in immutable versions."""

    organization = models.ForeignKey("tenancy.Organization", on_delete=models.CASCADE, related_name="datasets")
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100)
    task = models.CharField(max_length=40, choices=Task.choices)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [models.Index(fields=["organization", "-created_at"])]

    def __str__(self) -> str:
        return self.name

    @property
    def latest_version(self) -> "DatasetVersion | None":
        # Uses prefetched versions when the list selector loaded them (no query per row).
        return max(self.versions.all(), key=lambda version: version.number, default=None)


class DatasetVersion(models.Model):
    """One upload, validated. Never modified after creation: a new upload is a new version."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="versions")
    organization = models.ForeignKey("tenancy.Organization", on_delete=models.CASCADE, related_name="dataset_versions")
    number = models.PositiveIntegerField()
    original_filename = models.CharField(max_length=255, help_text="As uploaded; display only, never a storage path.")
    source_file = models.CharField(max_length=300, help_text="Storage name of the upload (server-generated).")
    train_file = models.CharField(max_length=300)
    validation_file = models.CharField(max_length=300)
    format = models.CharField(max_length=10)
    compressed = models.BooleanField(default=False)
    encoding = models.CharField(max_length=40)
    sha256 = models.CharField(max_length=64, db_index=True)
    size_bytes = models.BigIntegerField(help_text="The upload's size.")
    stored_bytes = models.BigIntegerField(help_text="Everything stored for this version (counts against the quota).")
    task = models.CharField(max_length=40, choices=Task.choices)
    column_mapping = models.JSONField(default=dict)
    base_model = models.ForeignKey("catalog.BaseModel", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    max_length = models.PositiveIntegerField(default=128)
    row_count = models.PositiveIntegerField()
    rejected_count = models.PositiveIntegerField()
    train_count = models.PositiveIntegerField()
    validation_count = models.PositiveIntegerField()
    label_count = models.PositiveIntegerField(default=0)
    report = models.JSONField(default=dict)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ("-number",)
        constraints = [models.UniqueConstraint(fields=["dataset", "number"], name="corpora_version_number_unique")]

    def __str__(self) -> str:
        return f"{self.dataset.name} v{self.number}"

    @property
    def status(self) -> str:
        return "ready_with_warnings" if self.report.get("warnings") else "ready"

    @property
    def stored_names(self) -> list[str]:
        return [self.source_file, self.train_file, self.validation_file]
