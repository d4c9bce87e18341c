"""Operators: jobs by state and queue with cancel / retry / requeue / priority
actions and their billed seconds, and a queue & worker overview page (usage
segments are billing's admin)."""
from django.conf import settings
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.urls import path

from billing.metering import with_job_usage

from . import lifecycle
from .models import Job, JobArtifact, JobEvent, JobState, PredictionInput, Worker


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
        """Per queue and device class: depth, the oldest waiting job, workers online and their current job
        (jobs/fleet.py: what the workers registered, read from the database — no broker broadcast needed)."""
        from django.utils import timezone

        from . import fleet

        now = timezone.now()
        running = list(Job.objects.filter(state=JobState.RUNNING).order_by("pk"))
        context = {**self.admin_site.each_context(request), "title": "Queues and workers",
                   "rows": fleet.fleet_overview(now), "running": running,
                   "stale": list(fleet.stale_workers(now)), "online_seconds": settings.LATHE_WORKER_ONLINE_SECONDS}
        return TemplateResponse(request, "admin/jobs/queues.html", context)


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    """The fleet's workers as they registered; drain one before taking its host down (it finishes its job
    and claims no new one), undo it to put the worker back to work."""

    list_display = ("name", "device_class", "device_count", "online", "draining", "current_job", "last_seen_at",
                    "started_at", "queue_list")
    list_filter = ("device_class", "draining")
    search_fields = ("name",)
    readonly_fields = [f.name for f in Worker._meta.fields]
    actions = ["drain", "undrain"]

    def has_add_permission(self, request):
        return False

    @admin.display(boolean=True, description="Online")
    def online(self, obj):
        from . import fleet

        return obj.stopped_at is None and obj.last_seen_at >= fleet.online_cutoff()

    @admin.display(description="Current job")
    def current_job(self, obj):
        job = Job.objects.filter(state=JobState.RUNNING, worker=obj.name).values_list("pk", flat=True).first()
        return job or "idle"

    @admin.display(description="Queues")
    def queue_list(self, obj):
        return ", ".join(obj.queues)

    @admin.action(description="Drain: finish the current job, take no more")
    def drain(self, request, queryset):
        from . import fleet

        count = fleet.worker_set_draining(workers=list(queryset), draining=True)
        self.message_user(request, f"Draining {count} worker(s): each finishes its current job and claims no new one.",
                          messages.SUCCESS)

    @admin.action(description="Undo drain: take jobs again")
    def undrain(self, request, queryset):
        from . import fleet

        count = fleet.worker_set_draining(workers=list(queryset), draining=False)
        self.message_user(request, f"{count} worker(s) take jobs again.", messages.SUCCESS)


@admin.register(PredictionInput)
class PredictionInputAdmin(admin.ModelAdmin):
    """Files of inputs organizations uploaded for batch predictions (read-only: they are the customers')."""

    list_display = ("id", "organization", "name", "task", "file_format", "rows", "labelled_rows", "size_bytes", "created_at")
    list_filter = ("task", "file_format")
    search_fields = ("name", "organization__name", "organization__slug")
    readonly_fields = [f.name for f in PredictionInput._meta.fields]

    def has_add_permission(self, request):
        return False
