"""Serving's truth in the database: which inference workers are up (a heartbeat row each, with what they
hold loaded) and one row per request (who asked for which model, what it took, how it ended). The answer
itself travels back through Celery's result backend; the request's inputs are kept only until answered."""
from __future__ import annotations

import uuid

from django.db import models


class InferenceWorker(models.Model):
    """An inference worker process (Procfile `inference`), as it reports itself every heartbeat."""

    name = models.CharField(max_length=200, unique=True, help_text="Celery's hostname, e.g. inference@host")
    queue = models.CharField(max_length=100, db_index=True)
    device_class = models.CharField(max_length=40)
    device_count = models.PositiveSmallIntegerField(default=1)
    pid = models.PositiveIntegerField(null=True, blank=True)
    concurrency = models.PositiveSmallIntegerField(default=1)
    max_models = models.PositiveSmallIntegerField(default=1)
    max_bytes = models.BigIntegerField(default=0)
    loaded = models.JSONField(default=list, blank=True, help_text="The models it holds, least recently used first.")
    loaded_bytes = models.BigIntegerField(default=0)
    evictions = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField()
    last_seen_at = models.DateTimeField(db_index=True)
    stopped_at = models.DateTimeField(null=True, blank=True, help_text="Set on a clean shutdown.")

    class Meta:
        ordering = ("queue", "name")

    def __str__(self) -> str:
        return f"{self.name} ({self.device_class})"


class RequestState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    EXPIRED = "expired", "Expired (the caller stopped waiting before a worker took it)"


class RequestKind(models.TextChoices):
    CLASSIFY = "classify", "Classify"
    CHAT = "chat", "Chat"


class Surface(models.TextChoices):
    API = "api", "API"
    OPENAI = "openai", "/v1/chat/completions"
    DASHBOARD = "dashboard", "Dashboard"


class InferenceRequest(models.Model):
    organization = models.ForeignKey("tenancy.Organization", on_delete=models.CASCADE, related_name="inference_requests")
    task_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False, help_text="The Celery task's id")
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    artifact = models.CharField(max_length=100, blank=True)
    uploaded_model = models.ForeignKey("registry.UploadedModel", null=True, blank=True, on_delete=models.SET_NULL,
                                       related_name="+")
    source_key = models.CharField(max_length=200, help_text="job-12/model.zip or upload-3")
    sha256 = models.CharField(max_length=64)
    variant = models.CharField(max_length=20)
    kind = models.CharField(max_length=20, choices=RequestKind.choices)
    surface = models.CharField(max_length=20, choices=Surface.choices, default=Surface.API)
    state = models.CharField(max_length=20, choices=RequestState.choices, default=RequestState.QUEUED, db_index=True)
    payload = models.JSONField(default=dict, blank=True, help_text="The inputs and options; emptied once answered.")
    input_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    device_class = models.CharField(max_length=40, blank=True)
    warm = models.BooleanField(null=True, blank=True, help_text="The model was already loaded on the worker.")
    load_seconds = models.FloatField(null=True, blank=True)
    worker_seconds = models.DecimalField(max_digits=12, decimal_places=3, null=True, blank=True,
                                         help_text="Worker time billed: unpacking and loading (cold) plus the answer")
    error_code = models.CharField(max_length=60, blank=True)
    error_message = models.TextField(blank=True)

    class Meta:
        ordering = ("-id",)
        indexes = [models.Index(fields=["organization", "created_at"])]

    def __str__(self) -> str:
        return f"inference {self.pk} ({self.source_key}, {self.state})"
