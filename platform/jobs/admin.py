"""Operators: jobs by state and queue with cancel / retry / requeue / priority
actions and their billed seconds, and a queue & worker overview page (usage
segments are billing's admin)."""
from django.contrib import admin, messages
from django.db.models import Count
from django.template.response import TemplateResponse
from django.urls import path

from billing.metering import with_job_usage

from . import lifecycle
from .models import Job, JobArtifact, JobEvent, JobState


class JobEventInline(admin.TabularInline):
    model = JobEvent
    extra = 0
    can_delete = False
    fields = ("created_at", "attempt", "level", "message")
    readonly_fields = fields
    ordering = ("-id",)

    def has_add_permission(self, request, obj=None):
        return False


class JobArtifactInline(admin.TabularInline):
    model = JobArtifact
    extra = 0
    can_delete = False
    fields = ("name", "kind", "size_bytes", "sha256", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "organization", "kind", "state", "queue", "priority", "attempts", "step", "total_steps",
                    "worker", "billed_seconds", "created_at")
    list_filter = ("state", "queue", "kind", "method", "created_at")
    search_fields = ("id", "name", "organization__name", "organization__slug", "worker")
    list_select_related = ("organization",)
    readonly_fields = [f.name for f in Job._meta.fields if f.name != "priority"]
    inlines = [JobEventInline, JobArtifactInline]
    actions = ["cancel", "pause", "resume", "retry", "requeue", "raise_priority", "lower_priority"]

    def get_queryset(self, request):
        return with_job_usage(super().get_queryset(request))

    @admin.display(description="Billed s", ordering="billed_seconds")
    def billed_seconds(self, obj):
        return obj.billed_seconds or 0

    def has_add_permission(self, request):
        return False

    @admin.action(description="Cancel selected jobs")
    def cancel(self, request, queryset):
        count = 0
        for job in queryset.exclude(state__in=[JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED]):
            lifecycle.job_cancel(organization=job.organization, actor=None, job_id=job.pk)
            count += 1
        self.message_user(request, f"Cancelled (or asked to cancel) {count} job(s).", messages.SUCCESS)

    @admin.action(description="Pause selected fine-tunes (they stop at a checkpoint)")
    def pause(self, request, queryset):
        count = 0
        for job in queryset:
            if job.pausable:
                lifecycle.job_pause(organization=job.organization, actor=None, job_id=job.pk)
                count += 1
        self.message_user(request, f"Paused (or asked to pause) {count} job(s).", messages.SUCCESS)

    @admin.action(description="Resume selected paused jobs")
    def resume(self, request, queryset):
        count = 0
        for job in queryset.filter(state=JobState.PAUSED):
            lifecycle.job_resume(organization=job.organization, actor=None, job_id=job.pk)
            count += 1
        self.message_user(request, f"Resumed {count} job(s).", messages.SUCCESS)

    @admin.action(description="Retry selected failed jobs")
    def retry(self, request, queryset):
        count = sum(lifecycle.job_requeue(job=job, reason=f"retry by {request.user}") for job in queryset.filter(state=JobState.FAILED))
        self.message_user(request, f"Re-queued {count} failed job(s).", messages.SUCCESS)

    @admin.action(description="Requeue selected ended jobs (failed or cancelled)")
    def requeue(self, request, queryset):
        count = sum(lifecycle.job_requeue(job=job, reason=f"requeue by {request.user}")
                    for job in queryset.filter(state__in=[JobState.FAILED, JobState.CANCELLED]))
        self.message_user(request, f"Re-queued {count} job(s).", messages.SUCCESS)

    @admin.action(description="Raise priority (run sooner)")
    def raise_priority(self, request, queryset):
        for job in queryset:
            Job.objects.filter(pk=job.pk).update(priority=max(0, job.priority - 1))

    @admin.action(description="Lower priority")
    def lower_priority(self, request, queryset):
        for job in queryset:
            Job.objects.filter(pk=job.pk).update(priority=min(9, job.priority + 1))

    def get_urls(self):
        from functools import partial

        from .admin_quotes import quote_accuracy_view  # the quote error per device class (read-only)

        accuracy = self.admin_site.admin_view(partial(quote_accuracy_view, admin_site=self.admin_site))
        return [path("queues/", self.admin_site.admin_view(self.queues_view), name="jobs_queues"),
                path("quote-accuracy/", accuracy, name="jobs_quote_accuracy"), *super().get_urls()]

    def queues_view(self, request):
        """Queue depths from the database, and the workers online (Celery inspect)."""
        from celery import current_app as app  # the project's app; apps never import config

        depths = list(Job.objects.filter(state__in=[JobState.QUEUED, JobState.RUNNING]).values("queue", "state")
                      .annotate(n=Count("id")).order_by("queue", "state"))
        running = {j.worker: j for j in Job.objects.filter(state=JobState.RUNNING)}
        workers, inspect_error = [], None
        try:
            replies = app.control.inspect(timeout=1.0).active_queues() or {}
            for name, queues in sorted(replies.items()):
                job = running.get(name)
                workers.append({"name": name, "queues": ", ".join(q["name"] for q in queues), "job": job})
        except Exception as exc:  # e.g. a broker without broadcast (the filesystem transport)
            inspect_error = f"{type(exc).__name__}: {exc}"
        context = {**self.admin_site.each_context(request), "title": "Queues and workers", "depths": depths,
                   "workers": workers, "running": list(running.values()), "inspect_error": inspect_error}
        return TemplateResponse(request, "admin/jobs/queues.html", context)
