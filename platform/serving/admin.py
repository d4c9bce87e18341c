"""Operators: the inference workers as they last reported (what they hold loaded) and the requests."""
from django.contrib import admin

from core.admin import ReadOnlyAdmin

from .models import InferenceRequest, InferenceWorker


@admin.register(InferenceWorker)
class InferenceWorkerAdmin(ReadOnlyAdmin):
    list_display = ("name", "queue", "device_class", "concurrency", "max_models", "loaded_bytes", "evictions",
                    "last_seen_at", "stopped_at")
    list_filter = ("queue", "device_class")


@admin.register(InferenceRequest)
class InferenceRequestAdmin(ReadOnlyAdmin):
    list_display = ("id", "organization", "source_key", "variant", "kind", "surface", "state", "warm", "worker_seconds",
                    "created_at", "worker")
    list_filter = ("state", "kind", "surface", "variant")
    search_fields = ("organization__slug", "source_key", "worker")
    list_select_related = ("organization",)
    exclude = ("payload",)  # the caller's texts: not for operators' eyes
