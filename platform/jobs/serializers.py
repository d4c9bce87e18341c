import dataclasses
from collections.abc import Mapping

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers

from workers import kinds

from core.errors import ApplicationError
from core.serializers import BoundedCharField, QuerySerializer, RequestSerializer

from . import selectors
from .estimates import Estimator
from .models import Job, JobArtifact, JobEvent, JobKind, JobMetric, JobState, Method, PredictionInput


def _help(declaration, name: str) -> str:
    return kinds.options_of(declaration)[name].metadata["help"]


def number_schema(f) -> dict:
    """One declared field (workers/kinds.py) as JSON Schema: type, bounds, help, default, "auto" where accepted."""
    meta = f.metadata
    if meta["type"] is list:
        value = {"type": "array", "items": {"type": "string"}, "minItems": 1}
    elif meta["type"] is bool:
        value = {"type": "boolean"}
    elif meta["type"] is str:
        value = {"type": "string", **({"enum": list(meta["choices"])} if meta["choices"] else {})}
    else:
        value = {"type": "integer" if meta["type"] is int else "number"}
        value.update({k: meta[b] for k, b in (("minimum", "min"), ("maximum", "max")) if meta[b] is not None})
    default = f.default_factory() if f.default is dataclasses.MISSING else f.default
    description = meta["help"] + (" (LoRA only)" if meta["methods"] == ("lora",) else "")
    if not meta["auto"] and default is not None:
        description += f'. auto: {default}'
    return {"oneOf": [value, {"type": "string", "enum": ["auto"]}], "description": description}


class DeclaredOptionField(serializers.JSONField):
    """One declared option taken as given (a number or "auto"); its schema is
    the declaration's (read when the schema is built), the checks are the
    submission's (jobs/submission.py), from the same declaration."""

    def __init__(self, *, declaration: type, option: str, **kwargs):
        self.declaration, self.option = declaration, option
        kwargs.setdefault("help_text", _help(declaration, option))
        super().__init__(**kwargs)


class HyperparametersField(serializers.DictField):
    """A kind's hyperparameters (default: workers/kinds.FineTuneHyperparameters); checked by jobs.hyperparameters.check."""

    def __init__(self, *, declaration: type = kinds.FineTuneHyperparameters, **kwargs):
        self.declaration = declaration
        super().__init__(**kwargs)


class DeclaredOptionFieldExtension(OpenApiSerializerFieldExtension):
    target_class = DeclaredOptionField

    def map_serializer_field(self, auto_schema, direction):
        f = kinds.options_of(self.target.declaration)[self.target.option]
        schema = number_schema(f)
        if not f.metadata["auto"]:  # only "auto"-computed options take the word
            schema = dict(schema["oneOf"][0], description=schema["description"])
        return schema


class HyperparametersFieldExtension(OpenApiSerializerFieldExtension):
    """The schema of `hyperparameters`, generated from the declaration when the schema is built."""
    target_class = HyperparametersField

    def map_serializer_field(self, auto_schema, direction):
        declared = kinds.options_of(self.target.declaration)
        return {"type": "object", "additionalProperties": False,
                "properties": {name: number_schema(f) for name, f in declared.items()}}


def _typed_option_field(declaration: type, name: str) -> serializers.Field:
    """The flat request's DRF field for one compression option: typed by its declaration."""
    meta = kinds.options_of(declaration)[name].metadata
    if meta["auto"]:
        return DeclaredOptionField(declaration=declaration, option=name, required=False)
    if meta["choices"]:
        return serializers.ChoiceField(choices=meta["choices"], required=False, help_text=meta["help"])
    field_class = {int: serializers.IntegerField, float: serializers.FloatField}.get(meta["type"], serializers.CharField)
    return field_class(required=False, help_text=meta["help"])


def _declaring(name: str) -> type:
    return kinds.KINDS[kinds.kinds_taking(name)[0]]


class JobSubmitSerializer(RequestSerializer):
    kind = serializers.ChoiceField(choices=JobKind.choices, default=JobKind.FINETUNE)
    dataset_id = serializers.IntegerField(required=False, help_text="Fine-tune: the data. Compression: evaluation data "
                                                                    "(default: the source job's validation split)")
    dataset_version = serializers.IntegerField(required=False, help_text="Defaults to the latest version")
    base_model = serializers.CharField(required=False, help_text="Fine-tune: catalog slug, e.g. all-minilm-l6-v2")
    validation_dataset_id = serializers.IntegerField(required=False, allow_null=True, help_text=(
        "Fine-tunes: a validation set of its own — another dataset of the same task whose every row validates "
        "(early stopping, the best checkpoint); the training dataset is then trained on whole, its own validation "
        "split included, and nothing is refit (OpenAI's validation_file)"))
    validation_dataset_version = serializers.IntegerField(required=False, allow_null=True, help_text=(
        "Fine-tunes: the validation set's version (default: its latest)"))
    test_dataset_id = serializers.IntegerField(required=False, allow_null=True, help_text=(
        "Fine-tunes: a held-out test set — another dataset of the same task whose every row the final model is "
        "scored on once, after training and every choice (never used for training, early stopping or the best "
        "checkpoint); a classifier's test labels must be among the training data's, a chat model's replies are "
        "scored by exact match and token F1"))
    test_dataset_version = serializers.IntegerField(required=False, allow_null=True, help_text=(
        "Fine-tunes: the test set's version (default: its latest)"))
    test_fraction = serializers.FloatField(required=False, allow_null=True, help_text=(
        "Fine-tunes: instead of test_dataset_id, carve this share (0.02–0.5) of the train split as the test set "
        "before training (seeded; stratified by label for classifiers, whole conversations for chat; duplicates "
        "on one side; the same rows for every job)"))
    inputs_id = serializers.IntegerField(required=False, help_text=(
        "Predict: an uploaded file of inputs (POST /api/v1/prediction-inputs) instead of dataset_id; labels optional"))
    source_job_id = serializers.IntegerField(required=False, help_text="Compression: the succeeded job whose model to compress")
    source_model_id = serializers.IntegerField(required=False, help_text="Compression: an uploaded model instead (needs dataset_id)")
    models = serializers.JSONField(required=False, help_text=(
        'Evaluate: the 2–10 models compared, each {"job_id": 12}, {"job_id": 12, "artifact": "model-onnx-int8.zip"} '
        'or {"uploaded_model_id": 3} (GET /api/v1/jobs/{id}/leaderboard has the result; docs/comparison.md)'))
    held_out_of_job_id = serializers.IntegerField(required=False, help_text=(
        "Evaluate: instead of dataset_id, score the rows this fine-tune held out — its attached test set, or the test "
        "split it carved with test_fraction (the same rows, which its compressions did not train on either)"))
    model = serializers.JSONField(required=False, help_text=(
        'Predict: the model, {"job_id": 12}, {"job_id": 12, "artifact": "model-onnx-int8.zip"} or '
        '{"uploaded_model_id": 3} (docs/predictions.md)'))
    # The compression options: generated below from their declaration (workers/kinds.py).
    max_accuracy_drop = serializers.FloatField(required=False,
                                               default=kinds.default_of(kinds.CompressionOptions, "max_accuracy_drop"),
                                               help_text=_help(kinds.CompressionOptions, "max_accuracy_drop"))
    method = serializers.ChoiceField(choices=Method.choices, required=False,
                                     help_text="Fine-tunes: full or lora (default: full for finetune, lora for "
                                               "chat_finetune). Compression jobs ignore it (their method is the "
                                               "kind's: int8, prune_method, distill)")
    hyperparameters = HyperparametersField(required=False, default=dict, help_text=(
        'Fine-tune, distill and recovery. Each value may be "auto": ' + ", ".join(kinds.options_of(kinds.FineTuneHyperparameters))))
    name = BoundedCharField(required=False, allow_blank=True, default="", max_length=Job._meta.get_field("name").max_length,
                            help_text='Optional. Compression default: what and of which model, e.g. "int8 of <source name>"')
    max_cost = serializers.DecimalField(max_digits=12, decimal_places=4, required=False, allow_null=True,
                                        help_text="Budget in USD: the job stops there, keeps its best checkpoint and says why")
    device_class = BoundedCharField(required=False, allow_blank=True, default="", max_length=40, help_text=(
        "The class of worker to run on, e.g. nvidia-h100 (GET the fleet's classes from the error a wrong one "
        "gives); default: any worker of the plan's queue. Priced at the plan's rate for that class"))

    def get_fields(self):
        fields = super().get_fields()
        for name in kinds.compression_option_names():  # each compression kind's options, typed by their declaration
            fields[name] = _typed_option_field(_declaring(name), name)
        for name in kinds.options_of(kinds.EvaluateOptions):  # checked by submission.evaluate_submit
            fields.setdefault(name, DeclaredOptionField(declaration=kinds.EvaluateOptions, option=name, required=False))
        for name in kinds.options_of(kinds.PredictOptions):  # checked by submission.predict_submit
            fields.setdefault(name, DeclaredOptionField(declaration=kinds.PredictOptions, option=name, required=False))
        return fields

    def to_internal_value(self, data):
        # Strict: a misspelled option is a 400 naming it and the accepted ones, never dropped.
        # (The same words and code as a PATCH's unknown field: core.api.patch_changes.)
        if isinstance(data, Mapping) and not hasattr(data, "getlist"):
            unknown = sorted(str(key) for key in data if key not in self.fields)
            if unknown:
                message = f"This endpoint does not take {', '.join(unknown)}; it takes {', '.join(self.fields)}."
                raise ApplicationError(message, code="unknown_field", fields={name: [message] for name in unknown})
        return super().to_internal_value(data)


# What each kind's request takes besides its declared options (the platform's inputs: data, model, source).
KIND_INPUTS = {
    "finetune": ("dataset_id", "dataset_version", "base_model", "method", "hyperparameters", "validation_dataset_id",
                 "validation_dataset_version", "test_dataset_id", "test_dataset_version", "test_fraction"),
    "quantize": ("source_job_id", "source_model_id", "dataset_id", "dataset_version"),
    "prune": ("source_job_id", "source_model_id", "dataset_id", "dataset_version", "hyperparameters"),
    "distill": ("source_job_id", "source_model_id", "dataset_id", "dataset_version", "hyperparameters"),
    "chat_finetune": ("dataset_id", "dataset_version", "base_model", "method", "hyperparameters",
                      "validation_dataset_id", "validation_dataset_version", "test_dataset_id", "test_dataset_version",
                      "test_fraction"),
    "evaluate": ("models", "dataset_id", "dataset_version", "held_out_of_job_id"),
    "predict": ("model", "dataset_id", "dataset_version", "inputs_id"),
}
KIND_REQUIRED = {"finetune": ("dataset_id", "base_model"), "chat_finetune": ("dataset_id", "base_model")}
KIND_REQUIRED["evaluate"] = ("models",)  # and dataset_id or held_out_of_job_id
KIND_REQUIRED["predict"] = ("model",)  # and dataset_id or inputs_id
KIND_DEFAULT_METHOD = {"finetune": Method.FULL, "chat_finetune": Method.LORA}
# The declaration of a kind's `hyperparameters` (compression trains with the fine-tune's).
KIND_HYPERPARAMETERS = {"chat_finetune": kinds.ChatFineTuneHyperparameters}


def kind_request_serializer(kind: str) -> type[serializers.Serializer]:
    """The documented request body of one kind (a `oneOf` member, `kind` its
    discriminator): its inputs, then every option its declaration has, each
    with its type, bounds and help (hyperparameters: the fine-tune declaration's)."""
    flat = JobSubmitSerializer().fields

    def like(name: str, **changes) -> serializers.Field:  # the flat request's field, rebuilt (DRF copies fields by their arguments)
        field = flat[name]
        return type(field)(*field._args, **{**field._kwargs, **changes})

    fields = {"kind": serializers.ChoiceField(choices=[kind], help_text=f"{kind}: {JobKind(kind).label}")}
    for name in KIND_INPUTS[kind]:
        fields[name] = like(name, required=True) if name in KIND_REQUIRED.get(kind, ()) else like(name)
    if kind in KIND_DEFAULT_METHOD:
        fields["method"] = like("method", default=KIND_DEFAULT_METHOD[kind])
    if kind in KIND_HYPERPARAMETERS:
        fields["hyperparameters"] = HyperparametersField(declaration=KIND_HYPERPARAMETERS[kind], required=False,
                                                         help_text='Each value may be "auto"')
    if kind in (*kinds.COMPRESSION_KINDS, "evaluate", "predict"):
        declaration = kinds.KINDS[kind]
        fields.update({name: DeclaredOptionField(declaration=declaration, option=name, required=f.metadata["required"])
                       for name, f in kinds.options_of(declaration).items()})
    fields.update(name=like("name"), max_cost=like("max_cost"), device_class=like("device_class"))
    title = "".join(part.capitalize() for part in kind.split("_"))
    return type(f"{title}JobSerializer", (serializers.Serializer,), fields)  # component: <Kind>JobRequest


def job_request_schema() -> PolymorphicProxySerializer:
    """POST /jobs and /jobs/quote: one body per kind, discriminated by `kind`."""
    return PolymorphicProxySerializer(
        component_name="JobSubmit", resource_type_field_name="kind",  # component: JobSubmitRequest
        serializers={kind: kind_request_serializer(kind) for kind in KIND_INPUTS})


class JobHintSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="under_trained")
    message = serializers.CharField()
    suggestions = serializers.ListField(child=serializers.CharField(), help_text="What to try")


class ScoreSetSerializer(serializers.Serializer):
    split = serializers.CharField(help_text="validation | test")
    description = serializers.CharField(help_text="What the rows are and what they were used for")
    rows = serializers.IntegerField(allow_null=True)
    metrics = serializers.DictField(allow_null=True, help_text="accuracy, macro_f1, eval_loss (null until measured)")


class JobEvaluationSerializer(serializers.Serializer):
    selection = ScoreSetSerializer()
    test = ScoreSetSerializer(allow_null=True)


class PredictionInputRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    rows = serializers.IntegerField()


class PredictionInputUploadSerializer(RequestSerializer):
    file = serializers.FileField(help_text=(
        "CSV (a header with text, or text_a and text_b; optional id and label columns) or JSONL (one object a line: "
        "text | text_a + text_b | messages; optional id and label). Every row is checked; a 400 names the line"))
    name = BoundedCharField(required=False, allow_blank=True, default="", max_length=200)


class PredictionInputSerializer(serializers.ModelSerializer):
    class Meta:
        model = PredictionInput
        fields = ("id", "name", "file_format", "task", "rows", "labelled_rows", "size_bytes", "sha256", "created_at")
        read_only_fields = fields


class DatasetRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    version = serializers.IntegerField()
    name = serializers.CharField()


class QuotedSerializer(serializers.Serializer):
    estimated_seconds = serializers.IntegerField()
    low_seconds = serializers.IntegerField()
    high_seconds = serializers.IntegerField()
    estimated_cost_usd = serializers.CharField()
    device_class = serializers.CharField()
    method = serializers.CharField()
    basis = serializers.CharField()
    history_jobs = serializers.IntegerField()


class QuoteActualSerializer(serializers.Serializer):
    seconds = serializers.FloatField(help_text="Billed seconds (what the customer pays; work lost to infrastructure "
                                               "and redone is not billed)")
    cost_usd = serializers.CharField(help_text="Those seconds at the quoted rate")


class JobQuoteSerializer(serializers.Serializer):
    quoted = QuotedSerializer(help_text="The quote stored at submission: what POST /jobs/quote answered for the body")
    actual = QuoteActualSerializer(allow_null=True, help_text="Once the job succeeded; null before (or failed, cancelled)")
    error_percent = serializers.FloatField(allow_null=True, help_text="(actual − quoted) / quoted × 100: + it took longer "
                                                                      "(and cost more) than quoted")
    within_range = serializers.BooleanField(allow_null=True, help_text="low_seconds ≤ actual ≤ high_seconds")


class JobSerializer(serializers.ModelSerializer):
    dataset = serializers.SerializerMethodField(help_text="The data; null for a predict job over an uploaded input file")
    prediction_input = serializers.SerializerMethodField(help_text=(
        "Predict jobs over an uploaded input file (inputs_id): that file; null otherwise"))
    validation_dataset = serializers.SerializerMethodField(help_text=(
        "Fine-tunes given validation_dataset_id: the dataset version every row of which validated; null when the "
        "training dataset's own validation split did"))
    test_dataset = serializers.SerializerMethodField(help_text="Fine-tunes given test_dataset_id: the test set; null otherwise")
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
    evaluation = serializers.SerializerMethodField(help_text=(
        "Fine-tunes: what each score was measured on. `selection`: the validation split, which chose the epoch and "
        "the checkpoint (so it is optimistic about unseen data); `test`: the held-out test set (attached with "
        "test_dataset_id or carved with test_fraction), scored once by the delivered model — null until the job "
        "succeeds, or without a test set"))
    quote = serializers.SerializerMethodField(help_text=(
        "The quote stored at submission and, once the job succeeded, what it really took (its billed seconds) and "
        "the signed error; null for jobs submitted before quotes were stored"))

    class Meta:
        model = Job
        fields = ("id", "name", "kind", "state", "dataset", "prediction_input", "validation_dataset", "test_dataset", "test_fraction", "base_model", "method", "source_job", "source_model", "max_accuracy_drop",
                  "requested", "spec", "labels", "queue", "max_cost",
                  "priority", "attempts", "max_attempts", "progress", "queue_position", "eta", "eta_basis", "latest_metrics", "result",
                  "failure_reason", "device_class", "requested_device_class", "billed_seconds", "excluded_seconds", "running_seconds",
                  "evaluation", "hints", "quote", "cancel_requested_at", "pause_requested_at", "queued_at", "started_at", "finished_at", "created_at")
        read_only_fields = fields

    def to_representation(self, job):
        job.queue_position_now = selectors.queue_position(job=job)  # once, for both fields below
        # Once, for eta and eta_basis; one estimator for a whole list, so each history is read once.
        job.eta_now = selectors.eta(job=job, estimator=self.context.setdefault("estimator", Estimator()))
        return super().to_representation(job)

    @staticmethod
    def _dataset_ref(version) -> dict | None:
        return None if version is None else {"id": version.dataset_id, "version": version.number,
                                             "name": version.dataset.name}

    @extend_schema_field(DatasetRefSerializer(allow_null=True))
    def get_dataset(self, job) -> dict | None:
        return self._dataset_ref(job.dataset_version)

    @extend_schema_field(PredictionInputRefSerializer(allow_null=True))
    def get_prediction_input(self, job) -> dict | None:
        inputs = job.prediction_input
        return None if inputs is None else {"id": inputs.pk, "name": inputs.name, "rows": inputs.rows}

    @extend_schema_field(DatasetRefSerializer(allow_null=True))
    def get_validation_dataset(self, job) -> dict | None:
        return self._dataset_ref(job.validation_dataset_version)

    @extend_schema_field(DatasetRefSerializer(allow_null=True))
    def get_test_dataset(self, job) -> dict | None:
        return self._dataset_ref(job.test_dataset_version)

    @extend_schema_field(serializers.ChoiceField(choices=selectors.METHOD_VALUES))
    def get_method(self, job) -> str:
        return selectors.job_method(job)

    @extend_schema_field(JobHintSerializer(many=True))
    def get_hints(self, job) -> list[dict]:
        return selectors.training_hints(job)

    @extend_schema_field(JobEvaluationSerializer(allow_null=True))
    def get_evaluation(self, job) -> dict | None:
        return selectors.job_evaluation(job)

    @extend_schema_field(JobQuoteSerializer(allow_null=True))
    def get_quote(self, job) -> dict | None:
        from .quote_errors import quote_representation

        self._usage(job, "billed_seconds")  # the job's seconds, read once with the fields below
        return quote_representation(job)

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
