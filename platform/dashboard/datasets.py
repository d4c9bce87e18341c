"""Dataset pages: list + upload (with a progress bar through htmx), detail with
the preflight report as charts, preview, new versions, deletes."""
from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views import View

from catalog.models import TaskFamily
from catalog.selectors import base_model_list, default_base_model
from core.errors import ApplicationError, NotFound
from corpora import selectors, services
from corpora.models import Task

from .forms import DatasetUploadForm
from .views import OrganizationPageMixin, submit

LABEL_BARS_SHOWN = 40
CONVERSATIONS_SHOWN = 5


def _upload(form, *, organization, actor, dataset=None):
    # The form maps its fields (column overrides, base model) to the service's arguments.
    return submit(form, lambda **_: services.dataset_upload(organization=organization, actor=actor, dataset=dataset,
                                                            **form.service_kwargs()))


class DatasetUploadMixin(OrganizationPageMixin):
    upload_partial = "dashboard/partials/dataset_upload_form.html"

    upload_family = TaskFamily.CLASSIFICATION  # whose default model the form offers first

    def upload_form(self, data=None, files=None):
        return DatasetUploadForm(data, files, base_models=list(base_model_list()),
                                 initial_base_model=default_base_model(task_family=self.upload_family))

    def respond_to_upload(self, request, form, version, status, page_template, page_context):
        is_htmx = request.headers.get("HX-Request") == "true"
        if isinstance(version, services.UploadCheck):
            # Checked, nothing kept. A guessed encoding is written into the form, so sending it again keeps
            # the version read exactly as previewed (or the user types another encoding and checks again).
            check, status = version, 200
            if check.encoding_detection["needs_confirmation"]:
                data = form.data.copy()
                data["encoding"] = check.encoding
                form = self.upload_form(data, form.files)
            version = None
        else:
            check = None
        context = {"form": form, "check": check, "is_htmx": is_htmx}
        if version is not None:
            messages.success(request, f"{version.dataset.name} v{version.number}: {version.row_count} rows validated.")
            url = reverse("dashboard:dataset-detail", args=[self.organization.slug, version.dataset_id])
            if is_htmx:
                response = HttpResponse(status=204)
                response["HX-Redirect"] = url
                return response
            return redirect(url)
        if is_htmx:  # swap just the form, errors inline (the chosen file stays in its preserved input)
            return self.render_page(request, self.upload_partial, {**context, "upload_url": request.path}, status=status)
        return self.render_page(request, page_template, {**page_context, **context}, status=status)


class DatasetListView(DatasetUploadMixin, View):
    section = "datasets"
    template = "dashboard/datasets.html"

    def context(self):
        from corpora.limits import limits_for, storage_used

        return {"datasets": selectors.dataset_list(organization=self.organization),
                "limits": limits_for(organization=self.organization),
                "storage_used": storage_used(organization=self.organization),
                "upload_url": reverse("dashboard:datasets", args=[self.organization.slug])}

    def get(self, request, slug):
        return self.render_page(request, self.template, {**self.context(), "form": self.upload_form()})

    def post(self, request, slug):
        form = self.upload_form(request.POST, request.FILES)
        version, status = _upload(form, organization=self.organization, actor=self.actor)
        return self.respond_to_upload(request, form, version, status, self.template, self.context())


def _bars(counts: dict, limit: int) -> list[dict]:
    """Label counts, most frequent first as the report keeps them; past `limit`
    the rest is one bar."""
    items = list(counts.items())
    shown = [{"label": k, "count": n} for k, n in items[:limit]]
    if len(items) > limit:
        shown.append({"label": f"{len(items) - limit} more labels", "count": sum(n for _, n in items[limit:])})
    return shown


def _histogram(lengths: dict) -> list[dict]:
    hist = lengths.get("histogram") or {}
    counts, edges = hist.get("counts", []), hist.get("edges", [])
    return [{"from": edges[i], "to": edges[i + 1] - 1, "count": c,
             "over": edges[i] > lengths.get("max_length", 10**9)} for i, c in enumerate(counts)]


class DatasetDetailView(DatasetUploadMixin, View):
    section = "datasets"
    template = "dashboard/dataset_detail.html"

    def context(self, request, dataset_id):
        dataset = selectors.dataset_get(organization=self.organization, dataset_id=dataset_id)
        versions = list(selectors.dataset_version_list(organization=self.organization, dataset=dataset))
        wanted = request.GET.get("version")
        version = (selectors.dataset_version_get(organization=self.organization, dataset=dataset, number=int(wanted))
                   if wanted and wanted.isdigit() else (versions[0] if versions else None))
        report = version.report if version else {}
        lengths = report.get("lengths", {})
        histogram = _histogram(lengths)
        is_chat = dataset.task == Task.CHAT
        self.upload_family = TaskFamily.CHAT if is_chat else TaskFamily.CLASSIFICATION  # new versions: the same family
        return {
            "dataset": dataset, "versions": versions, "version": version, "report": report,
            "is_chat": is_chat, "tokens": report.get("tokens") if is_chat else None,
            "warnings": [DatasetUploadForm.in_form_words(w) for w in report.get("warnings", [])],
            "label_bars": _bars(report.get("labels", {}).get("counts", {}), LABEL_BARS_SHOWN),
            # Drawn by static/js/charts.js; the tables under the charts show the same numbers.
            "histogram": histogram, "length_chart": {"bins": histogram, "unit": lengths.get("unit", "")},
            "preview": selectors.dataset_version_preview(version=version, limit=CONVERSATIONS_SHOWN if is_chat else 20)
                       if version else [],
            "upload_url": reverse("dashboard:dataset-detail", args=[self.organization.slug, dataset.pk]),
        }

    def get(self, request, slug, dataset_id):
        return self.render_page(request, self.template, {**self.context(request, dataset_id), "form": self.upload_form()})

    def post(self, request, slug, dataset_id):
        """Upload a new version."""
        context = self.context(request, dataset_id)
        form = self.upload_form(request.POST, request.FILES)
        version, status = _upload(form, organization=self.organization, actor=self.actor, dataset=context["dataset"])
        return self.respond_to_upload(request, form, version, status, self.template, context)


class DatasetDeleteView(OrganizationPageMixin, View):
    def post(self, request, slug, dataset_id):
        _, error = self.attempt(request, lambda: services.dataset_delete(
            organization=self.organization, actor=self.actor, dataset_id=dataset_id))
        if error:
            return redirect("dashboard:dataset-detail", slug=slug, dataset_id=dataset_id)
        messages.success(request, "Dataset deleted.")
        return redirect("dashboard:datasets", slug=slug)


class DatasetVersionDeleteView(OrganizationPageMixin, View):
    def post(self, request, slug, dataset_id, number):
        _, error = self.attempt(request, lambda: services.dataset_version_delete(
            organization=self.organization, actor=self.actor, dataset_id=dataset_id, number=number))
        if error:
            return redirect("dashboard:dataset-detail", slug=slug, dataset_id=dataset_id)
        messages.success(request, f"Version {number} deleted.")
        from corpora.models import Dataset

        if Dataset.objects.filter(organization=self.organization, pk=dataset_id).exists():
            return redirect("dashboard:dataset-detail", slug=slug, dataset_id=dataset_id)
        return redirect("dashboard:datasets", slug=slug)


class DatasetVersionCsvView(OrganizationPageMixin, View):
    """Preview, label counts or rejected rows as a CSV download (core.csv_export
    neutralises formula-looking cells)."""

    def get(self, request, slug, dataset_id, number, kind):
        from core.csv_export import csv_response

        dataset = selectors.dataset_get(organization=self.organization, dataset_id=dataset_id)
        version = selectors.dataset_version_get(organization=self.organization, dataset=dataset, number=number)
        split = request.GET.get("split", "train")
        try:
            name, header, rows = selectors.dataset_version_csv(version=version, kind=kind, split=split)
        except NotFound:
            raise
        except ApplicationError as error:  # an unknown kind or split
            return HttpResponse(error.message, status=error.status_code, content_type="text/plain; charset=utf-8")
        return csv_response(name, header, rows)
