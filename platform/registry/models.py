"""Models an organization uploads (safetensors, validated) to compress them
like the models its own jobs produced."""
from __future__ import annotations

from django.conf import settings
from django.db import models

from core.models import TimeStampedModel


class UploadedModel(TimeStampedModel):
    organization = models.ForeignKey("tenancy.Organization", on_delete=models.CASCADE, related_name="uploaded_models")
    name = models.CharField(max_length=100)
    storage_name = models.CharField(max_length=300, help_text="The normalized archive (validated files only).")
    size_bytes = models.BigIntegerField()
    sha256 = models.CharField(max_length=64, help_text="Of the archive as uploaded.")
    stored_sha256 = models.CharField(max_length=64, blank=True, default="", help_text=(
        "Of the normalized archive kept in storage (what workers check before use); empty for models uploaded "
        "before it was recorded, which are used unchecked."))
    model_type = models.CharField(max_length=50, help_text="config.json model_type, e.g. bert")
    architecture = models.CharField(max_length=100)
    task = models.CharField(max_length=40, default="text_classification")
    labels = models.JSONField(default=list)
    num_layers = models.PositiveSmallIntegerField(null=True, blank=True)
    hidden_size = models.PositiveIntegerField(null=True, blank=True)
    parameter_count = models.BigIntegerField()
    max_length = models.PositiveIntegerField(default=128)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [models.Index(fields=["organization", "-created_at"])]

    def __str__(self) -> str:
        return f"uploaded model {self.pk} ({self.name})"

    # What hyperparameter 'auto' reads from a base model, for distillation from an upload.
    @property
    def default_max_length(self) -> int:
        return self.max_length

    default_hyperparameters: dict = {}
