"""Uploaded models: list + upload, detail with 'Compress this model' and the
jobs that used it, delete."""
from __future__ import annotations

from django import forms
from django.contrib import messages
from django.shortcuts import redirect
from django.urls import reverse
from django.views import View

from registry import selectors, services

from .jobs import CompressMixin, compress_form
from .predictions import predict_form_for_upload
from .views import OrganizationPageMixin, submit


class ModelUploadForm(forms.Form):
    file = forms.FileField(label="Model archive (.zip)", allow_empty_file=True,
                           help_text="The folder save_pretrained wrote, zipped: config.json, *.safetensors, tokenizer files.")
    name = forms.CharField(label="Name", required=False, max_length=10_000, help_text="Defaults to the file name.")


class ModelListView(OrganizationPageMixin, View):
    section = "models"
    template = "dashboard/models.html"

    def context(self, form=None):
        return {"models": selectors.uploaded_model_list(organization=self.organization), "form": form or ModelUploadForm()}

    def get(self, request, slug):
        return self.render_page(request, self.template, self.context())

    def post(self, request, slug):
        form = ModelUploadForm(request.POST, request.FILES)
        model, status = submit(form, lambda file, name: services.model_upload(
            organization=self.organization, actor=self.actor, uploaded=file, name=name))
        if model is None:
            return self.render_page(request, self.template, self.context(form), status=status)
        messages.success(request, f"{model.name}: validated and kept ({model.model_type}, {len(model.labels)} labels).")
        return redirect("dashboard:model-detail", slug=slug, model_id=model.pk)


class ModelDetailView(OrganizationPageMixin, View):
    section = "models"

    def get(self, request, slug, model_id):
        model = selectors.uploaded_model_get(organization=self.organization, model_id=model_id)
        return self.render_page(request, "dashboard/model_detail.html", {
            "model": model, "jobs": model.jobs.order_by("-created_at")[:50],
            "compress_form": compress_form(organization=self.organization, dataset_required=True),
            "predict_form": predict_form_for_upload(model)})


class ModelCompressView(CompressMixin, View):
    def post(self, request, slug, model_id):
        model = selectors.uploaded_model_get(organization=self.organization, model_id=model_id)
        return self.compress(request, back=reverse("dashboard:model-detail", args=[slug, model.pk]), source_model_id=model.pk)


class ModelDeleteView(OrganizationPageMixin, View):
    def post(self, request, slug, model_id):
        _done, error = self.attempt(request, lambda: services.model_delete(
            organization=self.organization, actor=self.actor, model_id=model_id))
        if error:
            return redirect("dashboard:model-detail", slug=slug, model_id=model_id)
        messages.success(request, "Model deleted.")
        return redirect("dashboard:models", slug=slug)
