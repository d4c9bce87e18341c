"""Job pages: list with filters and the launch form; a live job page."""
from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect
from django.urls import reverse
from django.views import View

from catalog.selectors import base_model_list
from core.errors import ApplicationError, NotFound
from corpora.selectors import dataset_list
from jobs import fleet, lifecycle, selectors, submission
from jobs.downloads import artifact_response
from jobs.estimates import Estimator
from jobs.models import FINETUNE_KINDS, JobKind, JobState
from jobs.quote_errors import quote_representation
from jobs.serializers import JobListQuerySerializer

from .forms import CompressForm, JobLaunchForm, apply_application_error
from .predictions import predict_context
from .views import OrganizationPageMixin

# What the job page's chart draws (static/js/charts.js): per step, two scales.
SERIES = [("train_loss", "train loss", "loss"), ("eval_loss", "validation loss", "loss"),
          ("accuracy", "validation accuracy", "score"), ("macro_f1", "validation macro-F1", "score")]
EVALUATED = ("eval_loss", "accuracy", "macro_f1", "perplexity")  # a chat fine-tune: loss and perplexity


def metrics_chart(job) -> dict:
    """The loss/accuracy chart's data (drawn by static/js/charts.js) and the
    per-epoch evaluations for the table under it.

    Training loss is logged every few steps; each epoch ends with one
    evaluation row (integral epoch, no train_loss), which also marks the
    epoch on the chart. A retried attempt may repeat an epoch: the last one
    counts.

    Only training rows are drawn: a compression job's closing measurement
    (the row with `accuracy_before`, workers/compression/run.py) is the
    compression report's, so a job that never trains has no chart data."""
    rows = [row for row in job.metrics.order_by("id").values_list("step", "epoch", "values")
            if "accuracy_before" not in row[2] and "perplexity_before" not in row[2]]
    series = []
    for key, label, axis in SERIES:
        points = [[step, values[key]] for step, _epoch, values in rows if isinstance(values.get(key), (int, float))]
        if points:
            series.append({"key": key, "label": label, "axis": axis, "points": points})
    ends: dict[int, dict] = {}
    for step, epoch, values in rows:
        # an evaluation row; not a chat job's closing row of reply scores, logged at the same epoch
        if "train_loss" not in values and any(k in values for k in EVALUATED) and float(epoch).is_integer() and epoch > 0:
            ends[int(epoch)] = {"epoch": int(epoch), "step": step, **{k: values.get(k) for k in EVALUATED}}
    evaluations = [ends[e] for e in sorted(ends)]
    x_max = max([job.total_steps or 0] + [step for step, _e, _v in rows]) or 1
    return {"has_data": bool(series),
            "data": {"x_max": x_max, "series": series, "epochs": [{"epoch": e["epoch"], "step": e["step"]} for e in evaluations]},
            "evaluations": evaluations}


COMPARED = [("size on disk", "size_bytes", "smaller is better", "bytes"),
            ("non-zero parameters", "nonzero_parameters", "smaller is better", "parameters"),
            ("latency p50, batch 1", "latency_ms_p50", "smaller is better", "ms"),
            ("throughput, batch 32", "throughput_batch32", "larger is better", "examples/s"),
            ("accuracy", "accuracy", "larger is better", ""), ("macro-F1", "macro_f1", "larger is better", "")]


def compression_chart(report: dict | None) -> dict | None:
    """The compression report's two charts (static/js/charts.js): before and
    after for each measure, each pair as a share of its larger value (the
    measures have different units; the tooltip shows the real values); and the
    pruning search's curve with the guard, when there was a search."""
    if not report:
        return None
    bars = []
    for label, key, hint, unit in COMPARED:
        before, after = report["before"].get(key), report["after"].get(key)
        if before is None or after is None:
            continue
        top = max(before, after) or 1
        bars.append({"label": label, "hint": hint, "unit": unit, "before": before, "after": after,
                     "before_pct": round(100 * before / top, 1), "after_pct": round(100 * after / top, 1)})
    curve = None
    search = report.get("search") or {}
    if search.get("curve"):
        curve = {"points": [{"amount": p["amount"], "accuracy": p.get("accuracy"), "drop": p["accuracy_drop_points"],
                             "passed": bool(p.get("passed"))} for p in search["curve"]],
                 "guard": report["guard"]["max_accuracy_drop_points"], "chosen": search.get("chosen")}
    return {"bars": bars, "curve": curve}


def trains(job) -> bool:
    """Whether the job has training steps (a loss chart): fine-tunes, distillation,
    pruning with recovery epochs; not int8 quantization or one-shot pruning."""
    return job.kind in FINETUNE_KINDS or bool(job.spec.get("training"))


def method_label(job) -> str:
    """The method as the lists show it: full, lora, int8, prune (neurons), distill."""
    method = selectors.job_method(job)
    return f"prune ({method})" if job.kind == JobKind.PRUNE else method


FILTERS = ("state", "kind", "created_after", "created_before")


def list_filters(params) -> tuple[dict, dict]:
    """The list's filters parsed as the API parses them (JobListQuerySerializer):
    (valid filters, {parameter: message}); a bad one is left out, not the others."""
    given = {k: params.get(k) for k in FILTERS if params.get(k)}
    query = JobListQuerySerializer(data=given)
    if query.is_valid():
        return query.validated_data, {}
    errors = {k: " ".join(str(m) for m in v) for k, v in query.errors.items()}
    rest = JobListQuerySerializer(data={k: v for k, v in given.items() if k not in errors})
    return (rest.validated_data if rest.is_valid() else {}), errors


# The launch forms: each fine-tune kind, its catalog family, its datasets' task and its submission.
LAUNCHES = {"finetune": ("classification", lambda task: task != "chat", submission.job_submit),
            "chat_finetune": ("chat", lambda task: task == "chat", submission.chat_submit)}


def launch_kind(data) -> str:
    kind = (data or {}).get("kind") or "finetune"
    return kind if kind in LAUNCHES else "finetune"


def launch_form(organization, data=None, *, kind: str | None = None) -> JobLaunchForm | None:
    """A kind's launch form, for the Jobs page and its Quote button (the kind posted, else
    `kind`); None for chat when the catalog has no chat model."""
    kind = kind or launch_kind(data)
    family, takes, _submit = LAUNCHES[kind]
    models = list(base_model_list(task_family=family))
    if kind != "finetune" and not models:
        return None
    datasets = [d for d in dataset_list(organization=organization) if takes(d.task)]
    return JobLaunchForm(data, datasets=datasets, base_models=models, kind=kind,
                         device_classes=fleet.known_device_classes())


def launch_submit(kind: str):
    return LAUNCHES[kind][2]


class JobListView(OrganizationPageMixin, View):
    section = "jobs"
    template = "dashboard/jobs.html"

    def form(self, data=None):
        return launch_form(self.organization, data, kind=None if data is not None else "finetune")

    def context(self, request, form=None):
        valid, errors = list_filters(request.GET)
        try:
            jobs = list(selectors.job_list(organization=self.organization, **valid)[:100])
        except ApplicationError as error:
            errors.update({k: " ".join(v) for k, v in error.fields.items()} or {"": error.message})
            jobs = list(selectors.job_list(organization=self.organization)[:100])
        estimator = Estimator()  # each history read once for the page
        for job in jobs:
            job.method_label = method_label(job)
            job.eta_now = None if job.is_terminal else selectors.eta(job=job, estimator=estimator)
        filters = {k: request.GET.get(k) or None for k in FILTERS}
        chat_form = form if form is not None and form.kind == "chat_finetune" else launch_form(self.organization, kind="chat_finetune")
        form = form if form is not None and form.kind == "finetune" else self.form()
        return {"jobs": jobs, "form": form, "chat_form": chat_form, "filters": filters, "filter_errors": errors,
                "states": JobState.choices, "kinds": JobKind.choices}

    def get(self, request, slug):
        context = self.context(request)
        wanted = request.GET.get("dataset", "")  # ?dataset=<id>: "Fine-tune this dataset" on a dataset page
        for form in (context["form"], context["chat_form"]):
            if form is not None and wanted.isdigit() and int(wanted) in {pk for pk, _ in form.fields["dataset_id"].choices}:
                form.initial["dataset_id"] = int(wanted)
        return self.render_page(request, self.template, context, status=400 if context["filter_errors"] else 200)

    def post(self, request, slug):
        form = self.form(request.POST)
        if form is None:
            messages.error(request, "The catalog has no chat model to fine-tune.")
            return redirect("dashboard:jobs", slug=slug)
        if form.is_valid():
            try:
                job, _created = launch_submit(form.kind)(organization=self.organization, actor=self.actor,
                                                         **form.service_kwargs())
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
        context = {"job": job, "chart": metrics_chart(job), "trains": trains(job), "hints": selectors.training_hints(job),
                   "evaluation": selectors.job_evaluation(job), "method": selectors.job_method(job), "eta": selectors.eta(job=job),
                   "compression": compression_chart(job.result.get("compression")),
                   "compress_form": compress_form(organization=self.organization, chat=job.kind == JobKind.CHAT_FINETUNE)
                   if job.state == "succeeded" else None,
                   "queue_position": position, "quote": quote_representation(job),
                   "events": list(job.events.order_by("-id")[:50]), "artifacts": list(job.artifacts.order_by("name")),
                   "fraction": round(100 * job.step / job.total_steps, 1) if job.total_steps else 0,
                   **comparison_context(job), **predict_context(job)}
        # htmx polls the live part only.
        template = "dashboard/partials/job_live.html" if request.headers.get("HX-Request") == "true" else "dashboard/job_detail.html"
        return self.render_page(request, template, context)


def comparison_context(job) -> dict:
    """An evaluate job's leaderboard and chart; a succeeded model job's 'Compare all my variants' button."""
    from jobs.leaderboard import board_of, scatter, scored_rows_description

    if job.kind == JobKind.EVALUATE:
        board = board_of(job)
        return {"leaderboard": board, "leaderboard_chart": scatter(board)}
    if job.state != JobState.SUCCEEDED:
        return {}
    from jobs.model_sources import variants_of

    variants = variants_of(organization=job.organization, job_id=job.pk)
    if len(variants) < 2:
        return {}
    root, held_out = _family_scoring(job)
    return {"compare_variants": len(variants), "compare_scores": scored_rows_description(
        version=root.test_dataset_version or root.dataset_version if held_out else root.dataset_version,
        held_out_of=root if held_out else None), "compare_held_out": held_out}


def _family_scoring(job) -> tuple:
    """(the family's fine-tune, whether it held rows out): a family's comparison scores the rows its fine-tune held
    out (its test set, attached or carved) when it has them; else its training dataset version, which the
    variants trained on — the page says so."""
    from jobs.staging import family_root

    root = family_root(job)
    return root, bool(root.kind in FINETUNE_KINDS
                      and (root.test_dataset_version_id or root.test_fraction))


class JobCompareVariantsView(OrganizationPageMixin, View):
    """One click: an evaluate job over this model and all its variants, on the rows its fine-tune held out (else
    on its fine-tune's dataset version)."""

    def post(self, request, slug, job_id):
        from jobs.model_sources import variants_of

        back = reverse("dashboard:job-detail", args=[slug, job_id])
        job = selectors.job_get(organization=self.organization, job_id=job_id)
        variants = variants_of(organization=self.organization, job_id=job.pk)
        root, held_out = _family_scoring(job)
        scored = {"held_out_of_job_id": root.pk} if held_out else {
            "dataset_id": root.dataset_version.dataset_id, "dataset_version": root.dataset_version.number}
        created, error = self.attempt(request, lambda: submission.evaluate_submit(
            organization=self.organization, actor=self.actor, models=[v.reference() for v in variants], **scored))
        if error:
            return redirect(back)
        comparison, _created = created
        messages.success(request, f"Job {comparison.pk} queued: comparing {len(variants)} variants.")
        return redirect("dashboard:job-detail", slug=slug, job_id=comparison.pk)


class CompareView(OrganizationPageMixin, View):
    """A comparison of the models the organization picks, on the dataset it picks."""

    section = "jobs"
    template = "dashboard/compare.html"

    def form(self, data=None):
        from jobs.model_sources import source_list

        from .forms import CompareForm

        return CompareForm(data, sources=source_list(organization=self.organization),
                           datasets=list(dataset_list(organization=self.organization)),
                           held_out_by=list(selectors.fine_tunes_with_held_out_rows(organization=self.organization)))

    def get(self, request, slug):
        return self.render_page(request, self.template, {"form": self.form()})

    def post(self, request, slug):
        form = self.form(request.POST)
        if form.is_valid():
            try:
                job, _created = submission.evaluate_submit(organization=self.organization, actor=self.actor,
                                                           **form.service_kwargs())
            except NotFound as error:  # a model deleted meanwhile: said on the form, like any refusal
                form.add_error(None, error.message)
            except ApplicationError as error:
                apply_application_error(form, error)
            else:
                messages.success(request, f"Job {job.pk} queued: comparing {len(form.cleaned_data['models'])} models.")
                return redirect("dashboard:job-detail", slug=slug, job_id=job.pk)
        return self.render_page(request, self.template, {"form": form}, status=400)


class JobLeaderboardCsvView(OrganizationPageMixin, View):
    def get(self, request, slug, job_id):
        from core.csv_export import csv_response
        from jobs.leaderboard import csv_rows, evaluate_job_get

        name, header, rows = csv_rows(evaluate_job_get(organization=self.organization, job_id=job_id))
        return csv_response(name, header, rows)


class JobCancelView(OrganizationPageMixin, View):
    def post(self, request, slug, job_id):
        self.attempt(request, lambda: lifecycle.job_cancel(organization=self.organization, actor=self.actor, job_id=job_id))
        return redirect(reverse("dashboard:job-detail", args=[slug, job_id]))


class JobPauseView(OrganizationPageMixin, View):
    def post(self, request, slug, job_id):
        self.attempt(request, lambda: lifecycle.job_pause(organization=self.organization, actor=self.actor, job_id=job_id))
        return redirect(reverse("dashboard:job-detail", args=[slug, job_id]))


class JobResumeView(OrganizationPageMixin, View):
    def post(self, request, slug, job_id):
        self.attempt(request, lambda: lifecycle.job_resume(organization=self.organization, actor=self.actor, job_id=job_id))
        return redirect(reverse("dashboard:job-detail", args=[slug, job_id]))


class JobArtifactDownloadView(OrganizationPageMixin, View):
    def get(self, request, slug, job_id, name):
        job = selectors.job_get(organization=self.organization, job_id=job_id)
        return artifact_response(job=job, artifact=selectors.artifact_get(job=job, name=name))


class CompressMixin(OrganizationPageMixin):
    """The 'Compress this model' form (dashboard/forms.CompressForm, generated from
    the compression kinds' declarations), for a job's model and an uploaded one."""

    def compress(self, request, *, back, source_job_id=None, source_model_id=None, chat=False):
        form = CompressForm(request.POST, datasets=dataset_list(organization=self.organization),
                            base_models=base_model_list(task_family="classification"), chat=chat)
        if not form.is_valid():
            self.form_errors_to_messages(request, form)
            return redirect(back)
        created, error = self.attempt(request, lambda: submission.compression_submit(
            organization=self.organization, actor=self.actor, source_job_id=source_job_id,
            source_model_id=source_model_id, **form.service_kwargs()))
        if error:
            return redirect(back)
        job, _created = created
        messages.success(request, f"Job {job.pk} queued: {job.get_kind_display().lower()}.")
        return redirect("dashboard:job-detail", slug=self.organization.slug, job_id=job.pk)


def compress_form(*, organization, dataset_required: bool = False, chat: bool = False) -> CompressForm:
    return CompressForm(datasets=list(dataset_list(organization=organization)), dataset_required=dataset_required,
                        base_models=list(base_model_list(task_family="classification")), chat=chat)


class JobCompressView(CompressMixin, View):
    """Start a compression job from a succeeded job's page (chains: any kind but int8)."""

    def post(self, request, slug, job_id):
        source = selectors.job_get(organization=self.organization, job_id=job_id)
        return self.compress(request, back=reverse("dashboard:job-detail", args=[slug, job_id]), source_job_id=source.pk,
                             chat=source.kind == JobKind.CHAT_FINETUNE)
