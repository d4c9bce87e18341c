import dataclasses
from collections.abc import Mapping

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from workers import kinds

from core.errors import ApplicationError
from core.serializers import BoundedCharField, QuerySerializer, RequestSerializer

from . import selectors
from .estimates import Estimator
from .models import Job, JobArtifact, JobEvent, JobKind, JobMetric, JobState, Method


def _help(declaration, name: str) -> str:
    return kinds.options_of(declaration)[name].metadata["help"]


def number_schema(f) -> dict:
    """One declared field (workers/kinds.py) as JSON Schema: type, bounds, help, default, "auto" where accepted."""
    meta = f.metadata
    if meta["type"] is list:
        value = {"type": "array", "items": {"type": "string"}, "minItems": 1}
    else:
        value = {"type": "integer" if meta["type"] is int else "number"}
        value.update({k: meta[b] for k, b in (("minimum", "min"), ("maximum", "max")) if meta[b] is not None})
    default = f.default_factory() if f.default is dataclasses.MISSING else f.default
    description = meta["help"] + (" (LoRA only)" if meta["methods"] == ("lora",) else "")
    if not meta["auto"] and default is not None:
        description += f'. auto: {default}'
    return {"oneOf": [value, {"type": "string", "enum": ["auto"]}], "description": description}


class SparsityField(serializers.JSONField):
    """A share (the declared bounds of PruneOptions.sparsity) or "auto"; never null."""


class HyperparametersField(serializers.DictField):
    """The fine-tune hyperparameters (workers/kinds.FineTuneHyperparameters); checked by jobs.hyperparameters.check."""


class SparsityFieldExtension(OpenApiSerializerFieldExtension):
    target_class = SparsityField

    def map_serializer_field(self, auto_schema, direction):
        schema = number_schema(kinds.options_of(kinds.PruneOptions)["sparsity"])
        schema.pop("description")
        return schema


class HyperparametersFieldExtension(OpenApiSerializerFieldExtension):
    """The schema of `hyperparameters`, generated from the declaration when the schema is built."""
    target_class = HyperparametersField

    def map_serializer_field(self, auto_schema, direction):
        declared = kinds.options_of(kinds.FineTuneHyperparameters)
        return {"type": "object", "additionalProperties": False,
                "properties": {name: number_schema(f) for name, f in declared.items()}}


class JobSubmitSerializer(RequestSerializer):
    kind = serializers.ChoiceField(choices=JobKind.choices, default=JobKind.FINETUNE)
    dataset_id = serializers.IntegerField(required=False, help_text="Fine-tune: the data. Compression: evaluation data "
                                                                    "(default: the source job's validation split)")
    dataset_version = serializers.IntegerField(required=False, help_text="Defaults to the latest version")
    base_model = serializers.CharField(required=False, help_text="Fine-tune: catalog slug, e.g. all-minilm-l6-v2")
    source_job_id = serializers.IntegerField(required=False, help_text="Compression: the succeeded job whose model to compress")
    source_model_id = serializers.IntegerField(required=False, help_text="Compression: an uploaded model instead (needs dataset_id)")
    # The compression options: help, defaults and choices from their declaration (workers/kinds.py).
    max_accuracy_drop = serializers.FloatField(required=False,
                                               default=kinds.default_of(kinds.CompressionOptions, "max_accuracy_drop"),
                                               help_text=_help(kinds.CompressionOptions, "max_accuracy_drop"))
    prune_method = serializers.ChoiceField(choices=kinds.PRUNE_METHODS, required=False,
                                           help_text=_help(kinds.PruneOptions, "prune_method"))
    sparsity = SparsityField(required=False, help_text=_help(kinds.PruneOptions, "sparsity"))
    recovery_epochs = serializers.IntegerField(required=False, help_text=_help(kinds.PruneOptions, "recovery_epochs"))
    student_layers = serializers.IntegerField(required=False, help_text=_help(kinds.DistillOptions, "student_layers"))
    student_base_model = serializers.CharField(required=False, help_text=_help(kinds.DistillOptions, "student_base_model"))
    temperature = serializers.FloatField(required=False, help_text=_help(kinds.DistillOptions, "temperature"))
    alpha = serializers.FloatField(required=False, help_text=_help(kinds.DistillOptions, "alpha"))
    method = serializers.ChoiceField(choices=Method.choices, default=Method.FULL,
                                     help_text="Fine-tune: full or lora. Compression jobs ignore it (their method is the "
                                               "kind's: int8, prune_method, distill)")
    hyperparameters = HyperparametersField(required=False, default=dict, help_text=(
        'Fine-tune, distill and recovery. Each value may be "auto": ' + ", ".join(kinds.options_of(kinds.FineTuneHyperparameters))))
    name = BoundedCharField(required=False, allow_blank=True, default="", max_length=Job._meta.get_field("name").max_length,
                            help_text='Optional. Compression default: what and of which model, e.g. "int8 of <source name>"')
    max_cost = serializers.DecimalField(max_digits=12, decimal_places=4, required=False, allow_null=True,
                                        help_text="Budget in USD: the job stops there, keeps its best checkpoint and says why")

    def to_internal_value(self, data):
        # Strict: a misspelled option is a 400 naming it and the accepted ones, never dropped.
        # (The same words and code as a PATCH's unknown field: core.api.patch_changes.)
        if isinstance(data, Mapping) and not hasattr(data, "getlist"):
            unknown = sorted(str(key) for key in data if key not in self.fields)
            if unknown:
                message = f"This endpoint does not take {', '.join(unknown)}; it takes {', '.join(self.fields)}."
                raise ApplicationError(message, code="unknown_field", fields={name: [message] for name in unknown})
        return super().to_internal_value(data)


class JobHintSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="under_trained")
    message = serializers.CharField()
    suggestions = serializers.ListField(child=serializers.CharField(), help_text="What to try")


class JobSerializer(serializers.ModelSerializer):
    dataset = serializers.SerializerMethodField()
    base_model = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    progress = serializers.SerializerMethodField()
    queue_position = serializers.SerializerMethodField()
    eta = serializers.SerializerMethodField(help_text=(
        "When the job should finish (ISO 8601), not moving with the clock. Running: its remaining steps × its step "
        "time (the median of its recent steps) from its last progress report; before its first steps, or for "
        "compression, its start + its estimate. Queued: the work ahead of it in its queue (the running jobs' "
        "remaining time, then the estimates of the queued jobs ahead), spread over the queue's workers "
        "(LATHE_QUEUE_CONCURRENCY, else as many as run now), plus its own estimate (the quote's). Null when "
        "finished, or when a running job is past its estimate with no step time to go by"))
    eta_basis = serializers.SerializerMethodField(help_text="What `eta` rests on, in words (the dashboard shows it on "
                                                            "hover); null when finished")
    method = serializers.SerializerMethodField(help_text="Per kind: finetune full | lora; quantize int8; prune its "
                                                         "prune_method (magnitude | heads | neurons | layers); distill distill")
    hints = serializers.SerializerMethodField(help_text="Advice from the finished run, e.g. code under_trained: the last "
                                                        "epoch still improved the best accuracy by more than 1 point")
    billed_seconds = serializers.SerializerMethodField(help_text="Billable seconds (the running attempt's included); "
                                                                 "work lost to infrastructure and redone is not billed")
    excluded_seconds = serializers.SerializerMethodField(help_text="Seconds not billed: a lost attempt's work after the "
                                                                   "checkpoint the next attempt resumed from")
    running_seconds = serializers.SerializerMethodField(help_text="Of billed_seconds, those of the attempt still running "
                                                                  "(not yet in the ledger)")

    class Meta:
        model = Job
        fields = ("id", "name", "kind", "state", "dataset", "base_model", "method", "source_job", "source_model", "max_accuracy_drop",
                  "requested", "spec", "labels", "queue", "max_cost",
                  "priority", "attempts", "max_attempts", "progress", "queue_position", "eta", "eta_basis", "latest_metrics", "result",
                  "failure_reason", "device_class", "billed_seconds", "excluded_seconds", "running_seconds",
                  "hints", "cancel_requested_at", "queued_at", "started_at", "finished_at", "created_at")
        read_only_fields = fields

    def to_representation(self, job):
        job.queue_position_now = selectors.queue_position(job=job)  # once, for both fields below
        # Once, for eta and eta_basis; one estimator for a whole list, so each history is read once.
        job.eta_now = selectors.eta(job=job, estimator=self.context.setdefault("estimator", Estimator()))
        return super().to_representation(job)

    def get_dataset(self, job) -> dict:
        version = job.dataset_version
        return {"id": version.dataset_id, "version": version.number, "name": version.dataset.name}

    @extend_schema_field(serializers.ChoiceField(choices=selectors.METHOD_VALUES))
    def get_method(self, job) -> str:
        return selectors.job_method(job)

    @extend_schema_field(JobHintSerializer(many=True))
    def get_hints(self, job) -> list[dict]:
        return selectors.training_hints(job)

    def get_progress(self, job) -> dict:
        return {"step": job.step, "total_steps": job.total_steps, "epoch": round(job.epoch, 3),
                "fraction": round(job.step / job.total_steps, 4) if job.total_steps else 0.0}

    def get_queue_position(self, job) -> int | None:
        return job.queue_position_now

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_eta(self, job) -> str | None:
        return job.eta_now.at.isoformat() if job.eta_now.at else None

    def get_eta_basis(self, job) -> str | None:
        return job.eta_now.basis

    def _usage(self, job, name: str) -> float:
        if not hasattr(job, name):  # a job not read through selectors.job_list
            usage = selectors.with_usage(Job.objects.filter(pk=job.pk)).values(
                "billed_seconds", "excluded_seconds", "running_seconds").first() or {}
            for key, value in usage.items():
                setattr(job, key, value)
        return float(getattr(job, name, None) or 0)

    def get_billed_seconds(self, job) -> float:
        return self._usage(job, "billed_seconds")

    def get_excluded_seconds(self, job) -> float:
        return self._usage(job, "excluded_seconds")

    def get_running_seconds(self, job) -> float:
        return self._usage(job, "running_seconds")


class JobEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = JobEvent
        fields = ("id", "attempt", "level", "message", "created_at")
        read_only_fields = fields


class JobMetricSerializer(serializers.ModelSerializer):
    class Meta:
        model = JobMetric
        fields = ("id", "step", "epoch", "values", "created_at")
        read_only_fields = fields


class JobArtifactSerializer(serializers.ModelSerializer):
    class Meta:
        model = JobArtifact
        fields = ("name", "kind", "size_bytes", "sha256", "created_at")
        read_only_fields = fields


class JobListQuerySerializer(QuerySerializer):
    state = serializers.ChoiceField(choices=JobState.choices, required=False, error_messages={
        "invalid_choice": f'"{{input}}" is not a state: state must be one of {", ".join(JobState.values)}.'})
    kind = serializers.ChoiceField(choices=JobKind.choices, required=False, error_messages={
        "invalid_choice": f'"{{input}}" is not a kind: kind must be one of {", ".join(JobKind.values)}.'})
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)


class CursorQuerySerializer(QuerySerializer):
    after = serializers.IntegerField(required=False, min_value=0, default=0, help_text="Return items with id > after")
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000, default=200)
