"""Job pages: list with filters and the launch form; a live job page."""
from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect
from django.urls import reverse
from django.views import View

from catalog.selectors import base_model_list
from core.errors import ApplicationError
from corpora.selectors import dataset_list
from jobs import selectors, services
from jobs.downloads import artifact_response
from jobs.models import JobState

from .forms import JobLaunchForm, apply_application_error
from .views import OrganizationPageMixin

CHART_WIDTH, CHART_HEIGHT = 600, 160


def _scaled(points: list[tuple[float, float]], x_max: float, y_min: float, y_max: float) -> list[tuple[float, float]]:
    span = (y_max - y_min) or 1.0
    return [(round(CHART_WIDTH * x / (x_max or 1), 1), round(CHART_HEIGHT - CHART_HEIGHT * (y - y_min) / span, 1)) for x, y in points]


def _polyline(points: list[tuple[float, float]], x_max: float, y_min: float, y_max: float) -> str:
    return " ".join(f"{x},{y}" for x, y in _scaled(points, x_max, y_min, y_max))


def chart(job) -> dict:
    """SVG polylines: training loss (left scale) and validation accuracy (0–1)."""
    metrics = list(job.metrics.order_by("id").values_list("step", "values"))
    losses = [(s, v["train_loss"]) for s, v in metrics if "train_loss" in v]
    accuracy = [(s, v["accuracy"]) for s, v in metrics if "accuracy" in v]
    x_max = max([job.total_steps] + [s for s, _ in metrics]) or 1
    loss_max = max((v for _, v in losses), default=1.0)
    return {"width": CHART_WIDTH, "height": CHART_HEIGHT, "has_data": bool(losses or accuracy),
            "loss": _polyline(losses, x_max, 0.0, loss_max), "loss_max": round(loss_max, 3),
            "accuracy": _polyline(accuracy, x_max, 0.0, 1.0),
            # Evaluations are few (one per epoch): mark each, a lone one included.
            "accuracy_points": _scaled(accuracy, x_max, 0.0, 1.0),
            "last_accuracy": accuracy[-1][1] if accuracy else None}


class JobListView(OrganizationPageMixin, View):
    section = "jobs"
    template = "dashboard/jobs.html"

    def form(self, data=None):
        return JobLaunchForm(data, datasets=list(dataset_list(organization=self.organization)),
                             base_models=list(base_model_list()))

    def context(self, request, form=None):
        filters = {k: request.GET.get(k) or None for k in ("state", "kind", "created_after", "created_before")}
        try:
            jobs = list(selectors.job_list(organization=self.organization, **filters)[:100])
        except ApplicationError as error:
            messages.error(request, error.message)
            jobs = list(selectors.job_list(organization=self.organization)[:100])
        return {"jobs": jobs, "form": form or self.form(), "filters": filters, "states": JobState.choices}

    def get(self, request, slug):
        return self.render_page(request, self.template, self.context(request))

    def post(self, request, slug):
        form = self.form(request.POST)
        if form.is_valid():
            try:
                job, _created = services.job_submit(organization=self.organization, actor=self.actor, **form.service_kwargs())
            except ApplicationError as error:
                for field, problems in list(error.fields.items()):
                    if field.startswith("hyperparameters."):
                        error.fields[field.split(".", 1)[1]] = error.fields.pop(field)
                apply_application_error(form, error)
                return self.render_page(request, self.template, self.context(request, form), status=error.status_code)
            messages.success(request, f"Job {job.pk} queued.")
            return redirect("dashboard:job-detail", slug=slug, job_id=job.pk)
        return self.render_page(request, self.template, self.context(request, form), status=400)


class JobDetailView(OrganizationPageMixin, View):
    section = "jobs"

    def get(self, request, slug, job_id):
        job = selectors.job_get(organization=self.organization, job_id=job_id)
        position = selectors.queue_position(job=job)
        context = {"job": job, "chart": chart(job), "eta": selectors.eta(job=job, position=position),
                   "queue_position": position,
                   "events": list(job.events.order_by("-id")[:50]), "artifacts": list(job.artifacts.order_by("name")),
                   "fraction": round(100 * job.step / job.total_steps, 1) if job.total_steps else 0}
        # htmx polls the live part only.
        template = "dashboard/partials/job_live.html" if request.headers.get("HX-Request") == "true" else "dashboard/job_detail.html"
        return self.render_page(request, template, context)


class JobCancelView(OrganizationPageMixin, View):
    def post(self, request, slug, job_id):
        self.attempt(request, lambda: services.job_cancel(organization=self.organization, actor=self.actor, job_id=job_id))
        return redirect(reverse("dashboard:job-detail", args=[slug, job_id]))


class JobArtifactDownloadView(OrganizationPageMixin, View):
    def get(self, request, slug, job_id, name):
        job = selectors.job_get(organization=self.organization, job_id=job_id)
        return artifact_response(job=job, artifact=selectors.artifact_get(job=job, name=name))


class JobCompressView(OrganizationPageMixin, View):
    """Start a compression job from a succeeded job's page."""

    def post(self, request, slug, job_id):
        source = selectors.job_get(organization=self.organization, job_id=job_id)
        try:
            drop = float(request.POST.get("max_accuracy_drop", "1.0"))
            sparsity = float(request.POST["sparsity"]) if request.POST.get("sparsity") else None
        except ValueError:
            messages.error(request, "The accuracy drop and the sparsity must be numbers, e.g. 0.5.")
            return redirect("dashboard:job-detail", slug=slug, job_id=job_id)
        created, error = self.attempt(request, lambda: services.compression_submit(
            organization=self.organization, actor=self.actor, kind=request.POST.get("kind", "quantize"),
            source_job_id=source.pk, max_accuracy_drop=drop, sparsity=sparsity))
        if error:
            return redirect("dashboard:job-detail", slug=slug, job_id=job_id)
        job, _created = created
        messages.success(request, f"Job {job.pk} queued: {job.get_kind_display().lower()} of job {source.pk}.")
        return redirect("dashboard:job-detail", slug=slug, job_id=job.pk)
