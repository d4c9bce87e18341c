"""Batch predictions on the dashboard (docs/predictions.md): the "Batch predictions" form on a succeeded
model's job page and on an uploaded model's page (its options generated from workers/kinds.PredictOptions),
and what a predict job's page shows — progress in rows, the evaluation report (metrics, per label, the
confusion matrix as a picture and a table, the worst examples) and the downloads."""
from __future__ import annotations

from django import forms
from django.contrib import messages
from django.shortcuts import redirect
from django.urls import reverse
from django.views import View

from corpora.selectors import dataset_list
from jobs import prediction_inputs, selectors, submission
from jobs.model_sources import CHAT, MODEL_ARTIFACT_KIND, source_get
from jobs.models import JobKind, JobState
from workers import kinds

from .views import OrganizationPageMixin

CONFUSION_TABLE_MAX_LABELS = 25  # beyond this the table is unreadable; the picture and the JSON have it all


class PredictForm(forms.Form):
    dataset_id = forms.TypedChoiceField(label="Inputs (every row of the dataset's latest version)", coerce=int,
                                        required=False, empty_value=None)
    inputs_file = forms.FileField(label="or upload a file of inputs", required=False, help_text=(
        "CSV with a text column (or text_a, text_b), or JSONL lines with text or messages; id and label optional"))
    artifact = forms.ChoiceField(label="Model archive", required=False)

    def __init__(self, *args, datasets, artifacts=(), chat: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["dataset_id"].choices = [("", "— upload a file instead —"),
                                             *((d.pk, f"{d.name} ({d.task})") for d in datasets)]
        if len(artifacts) > 1:
            self.fields["artifact"].choices = [(name, name) for name in artifacts]
        else:
            del self.fields["artifact"]
        for name, f in kinds.options_of(kinds.PredictOptions).items():
            if name == "max_new_tokens" and not chat:
                continue
            meta = f.metadata
            self.fields[name] = forms.IntegerField(label=meta["label"] or name.replace("_", " ").capitalize(),
                                                   min_value=meta["min"], max_value=meta["max"], initial=f.default,
                                                   help_text=meta["help"], required=False)

    def clean(self):
        data = super().clean()
        if (data.get("dataset_id") is None) == (not data.get("inputs_file")):
            raise forms.ValidationError("Choose a dataset or upload a file of inputs (one of the two).")
        return data

    def options(self) -> dict:
        return {name: self.cleaned_data[name] for name in kinds.options_of(kinds.PredictOptions)
                if self.cleaned_data.get(name) is not None}


def _datasets(organization, *, family: str, task: str):
    wanted = (lambda t: t == "chat") if family == CHAT else (lambda t: t == task)
    return [d for d in dataset_list(organization=organization) if wanted(d.task)]


def predict_form_for_job(job, data=None, files=None) -> PredictForm | None:
    """The form on a succeeded job's page when the job delivered a model (not a comparison or predictions)."""
    if job.state != JobState.SUCCEEDED or job.kind in (JobKind.PREDICT, JobKind.EVALUATE):
        return None
    names = list(job.artifacts.filter(kind=MODEL_ARTIFACT_KIND).order_by("name").values_list("name", flat=True))
    if not names:
        return None
    source = source_get(organization=job.organization, job_id=job.pk, artifact=names[0])
    return PredictForm(data, files, datasets=_datasets(job.organization, family=source.family, task=source.task),
                       artifacts=names, chat=source.family == CHAT)


def predict_form_for_upload(model) -> PredictForm:
    return PredictForm(datasets=_datasets(model.organization, family="classifier", task=model.task))


def predict_context(job) -> dict:
    """A predict job's report for its page (None until it succeeds), and its rows so far."""
    if job.kind != JobKind.PREDICT:
        return {"predict_form": predict_form_for_job(job)}
    report = (job.result or {}).get("predictions")
    confusion = None
    if report and report.get("confusion") and len(report["confusion"]["labels"]) <= CONFUSION_TABLE_MAX_LABELS:
        labels, matrix = report["confusion"]["labels"], report["confusion"]["matrix"]
        confusion = {"labels": labels, "rows": [{"label": label, "cells": [{"count": c, "diagonal": i == j}
                                                                             for j, c in enumerate(row)]}
                                                for i, (label, row) in enumerate(zip(labels, matrix))]}
    names = set(job.artifacts.values_list("name", flat=True))
    return {"predict_report": report, "predict_confusion": confusion,
            "predict_picture": "confusion_matrix.svg" in names,
            "predict_model": job.spec.get("model") or {}}


class PredictMixin(OrganizationPageMixin):
    def start(self, request, *, back: str, form: PredictForm, reference: dict):
        if not form.is_valid():
            self.form_errors_to_messages(request, form)
            return redirect(back)
        if form.cleaned_data.get("artifact"):
            reference = {**reference, "artifact": form.cleaned_data["artifact"]}
        created, error = self.attempt(request, lambda: self._submit(form, reference))
        if error:
            return redirect(back)
        job, _created = created
        messages.success(request, f"Job {job.pk} queued: batch predictions.")
        return redirect("dashboard:job-detail", slug=self.organization.slug, job_id=job.pk)


    def _submit(self, form: PredictForm, reference: dict):
        """The uploaded file kept (checked row by row), then the job; a job refused leaves no file behind."""
        upload = form.cleaned_data.get("inputs_file")
        if not upload:
            return submission.predict_submit(organization=self.organization, actor=self.actor, model=reference,
                                             dataset_id=form.cleaned_data["dataset_id"], options=form.options())
        inputs = prediction_inputs.prediction_input_upload(organization=self.organization, actor=self.actor,
                                                           uploaded=upload)
        try:
            return submission.predict_submit(organization=self.organization, actor=self.actor, model=reference,
                                             inputs_id=inputs.pk, options=form.options())
        except Exception:
            prediction_inputs.prediction_input_delete(organization=self.organization, actor=self.actor,
                                                      input_id=inputs.pk)
            raise


class JobPredictView(PredictMixin, View):
    """Start batch predictions with a succeeded job's model."""

    def post(self, request, slug, job_id):
        job = selectors.job_get(organization=self.organization, job_id=job_id)
        back = reverse("dashboard:job-detail", args=[slug, job.pk])
        form = predict_form_for_job(job, request.POST, request.FILES)
        if form is None:
            messages.error(request, f"Job {job.pk} has no model to predict with (it is {job.state}).")
            return redirect(back)
        return self.start(request, back=back, form=form, reference={"job_id": job.pk})


class ModelPredictView(PredictMixin, View):
    """Start batch predictions with an uploaded model."""

    def post(self, request, slug, model_id):
        from registry.selectors import uploaded_model_get

        model = uploaded_model_get(organization=self.organization, model_id=model_id)
        back = reverse("dashboard:model-detail", args=[slug, model.pk])
        form = PredictForm(request.POST, request.FILES,
                           datasets=_datasets(self.organization, family="classifier", task=model.task))
        return self.start(request, back=back, form=form, reference={"uploaded_model_id": model.pk})

