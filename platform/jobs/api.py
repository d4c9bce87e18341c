from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response

from core.api import OrganizationAPIView
from core.errors import field_error

from billing.serializers import QuoteSerializer

from core.parsers import JSONParser, StrictMultiPartParser
from corpora.limits import limits_for, refuse_oversized_body

from . import lifecycle, prediction_inputs, selectors, submission
from .downloads import artifact_response
from .quotes import quote
from .serializers import (
    CursorQuerySerializer,
    JobArtifactSerializer,
    JobEventSerializer,
    JobListQuerySerializer,
    JobMetricSerializer,
    JobSerializer,
    PredictionInputSerializer,
    PredictionInputUploadSerializer,
    KIND_DEFAULT_METHOD,
    JobSubmitSerializer,
    job_request_schema,
)


class JobListApi(OrganizationAPIView):
    serializer_class = JobSerializer
    extra_error_statuses = {"POST": ("402",)}  # billing.services.check_can_start_job

    @extend_schema(operation_id="jobs_list", parameters=[JobListQuerySerializer], responses=JobSerializer(many=True))
    def get(self, request):
        query = JobListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        page = self.paginate_queryset(selectors.job_list(organization=self.organization, **query.validated_data))
        return self.get_paginated_response(JobSerializer(page, many=True).data)

    @extend_schema(operation_id="jobs_create", request=job_request_schema(), responses={201: JobSerializer, 200: JobSerializer},
                   parameters=[OpenApiParameter("Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER,
                                                description="Same key + same body returns the same job; a different body is 409.")])
    def post(self, request):
        job, created = submit_from_request(self, request)
        job = selectors.job_get(organization=self.organization, job_id=job.pk)
        response = Response(JobSerializer(job).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)
        if not created:
            response["Idempotent-Replayed"] = "true"
        return response


class JobQuoteApi(OrganizationAPIView):
    serializer_class = QuoteSerializer

    @extend_schema(operation_id="jobs_quote", request=job_request_schema(), responses=QuoteSerializer,
                   description="What POST /jobs with this body would cost: the same validation (400s name the field), "
                               "nothing queued. Estimated from dataset tokens × epochs × model size and the throughput "
                               "measured on past jobs of the device class; priced at the plan's rate.")
    def post(self, request):
        job, _ = submit_from_request(self, request, dry_run=True)
        return Response(quote(job, entitlements=self.entitlements))


TEST_SET_FIELDS = ("test_dataset_id", "test_dataset_version", "test_fraction")
VALIDATION_SET_FIELDS = ("validation_dataset_id", "validation_dataset_version")


def submit_from_request(view, request, *, dry_run: bool = False):
    """Both POST /jobs and its quote: one parsing of the body into the services."""
    payload = JobSubmitSerializer(data=request.data)
    payload.is_valid(raise_exception=True)
    data = payload.validated_data
    key = None if dry_run else request.headers.get("Idempotency-Key")
    given = [name for name in TEST_SET_FIELDS if data.get(name) is not None]
    validation = [name for name in VALIDATION_SET_FIELDS if data.get(name) is not None]
    if validation and data["kind"] not in KIND_DEFAULT_METHOD:
        raise field_error(validation[0], f"{validation[0]} applies to fine-tunes (finetune, chat_finetune), not "
                                         f"{data['kind']}.")
    if given and data["kind"] not in KIND_DEFAULT_METHOD:
        raise field_error(given[0], f"{given[0]} applies to fine-tunes (finetune, chat_finetune: a held-out test set), "
                                    f"not {data['kind']}.")
    organization, actor, entitlements = view.organization, view.actor, view.entitlements
    if data["kind"] == "predict" or any(name in request.data for name in PREDICT_ONLY_FIELDS) or (
            data["kind"] != "evaluate" and "max_new_tokens" in request.data):
        return _predict_from_request(request, data, organization=organization, actor=actor, entitlements=entitlements,
                                     key=key, dry_run=dry_run)
    if data["kind"] == "evaluate" or any(name in request.data for name in EVALUATE_ONLY_FIELDS):
        return _evaluate_from_request(request, data, organization=organization, actor=actor, entitlements=entitlements,
                                      key=key, dry_run=dry_run)
    if data["kind"] in KIND_DEFAULT_METHOD:  # the kinds that start from a catalog model and a dataset
        for required in ("dataset_id", "base_model"):
            if data.get(required) in (None, ""):
                raise field_error(required, "This field is required for a fine-tune.", code="required")
        submit = submission.job_submit if data["kind"] == "finetune" else submission.chat_submit
        test_set = {name: data.get(name) for name in TEST_SET_FIELDS}
        test_set.update(validation_dataset_id=data.get("validation_dataset_id"),
                        validation_dataset_version=data.get("validation_dataset_version"))
        return submit(
            organization=organization, actor=actor, dataset_id=data["dataset_id"],
            dataset_version=data.get("dataset_version"), base_model=data["base_model"],
            method=data.get("method") or KIND_DEFAULT_METHOD[data["kind"]],
            hyperparameters_in=data["hyperparameters"], name=data["name"], max_cost=data.get("max_cost"),
            idempotency_key=key, dry_run=dry_run, entitlements=entitlements, device_class=data["device_class"],
            **test_set)
    return submission.compression_submit(
        organization=organization, actor=actor, kind=data["kind"], source_job_id=data.get("source_job_id"),
        source_model_id=data.get("source_model_id"),
        max_accuracy_drop=data.get("max_accuracy_drop"), dataset_id=data.get("dataset_id"),
        dataset_version=data.get("dataset_version"), name=data["name"], prune_method=data.get("prune_method"),
        options={k: data[k] for k in submission.numeric_options() if k in data},
        student_base_model=data.get("student_base_model"), hyperparameters_in=data["hyperparameters"] or None,
        max_cost=data.get("max_cost"), idempotency_key=key, dry_run=dry_run, entitlements=entitlements,
        device_class=data["device_class"])


def _refuse_fields_not_taken(request, accepted: set, *, what: str) -> None:
    """A field of the body the kind does not take is a 400 naming it and what it does take (never dropped)."""
    stray = sorted(str(name) for name in request.data if name not in accepted)
    if stray:
        raise field_error(stray[0], f"{stray[0]} does not apply to {what} {', '.join(sorted(accepted - {'kind'}))}.")


PREDICT_ONLY_FIELDS = ("model", "batch_size", "chunk_rows", "inputs_id")


def _predict_from_request(request, data, *, organization, actor, entitlements, key, dry_run):
    """kind predict (docs/predictions.md): the fields it takes, the others refused by name (never dropped)."""
    from workers.kinds import PredictOptions, options_of

    if data["kind"] != "predict":
        given = next((name for name in (*PREDICT_ONLY_FIELDS, "max_new_tokens") if name in request.data))
        raise field_error(given, f"{given} applies to batch predictions (kind predict)"
                                 + (" and comparisons (kind evaluate)" if given == "max_new_tokens" else "")
                                 + f", not {data['kind']}.")
    options = list(options_of(PredictOptions))
    accepted = {"kind", "model", "dataset_id", "dataset_version", "inputs_id", "name", "max_cost", "device_class",
                *options}
    _refuse_fields_not_taken(request, accepted, what="batch predictions; they take")
    return submission.predict_submit(
        organization=organization, actor=actor, model=data.get("model"), dataset_id=data.get("dataset_id"),
        dataset_version=data.get("dataset_version"), options={k: data[k] for k in options if k in data},
        name=data["name"], max_cost=data.get("max_cost"), idempotency_key=key, dry_run=dry_run,
        entitlements=entitlements, device_class=data.get("device_class") or "", inputs_id=data.get("inputs_id"))


EVALUATE_ONLY_FIELDS = ("models", "accuracy_tolerance", "latency_samples", "held_out_of_job_id")


def _evaluate_from_request(request, data, *, organization, actor, entitlements, key, dry_run):
    """kind evaluate (docs/comparison.md): the fields it takes, the others refused by name (never dropped)."""
    from workers.kinds import EvaluateOptions, options_of

    if data["kind"] != "evaluate":
        given = next(name for name in EVALUATE_ONLY_FIELDS if name in request.data)
        raise field_error(given, f"{given} applies to comparisons (kind evaluate), not {data['kind']}.")
    options = list(options_of(EvaluateOptions))
    accepted = {"kind", "models", "dataset_id", "dataset_version", "held_out_of_job_id", "name", "max_cost",
                "device_class", *options}
    _refuse_fields_not_taken(request, accepted, what="a comparison; it takes")
    return submission.evaluate_submit(
        organization=organization, actor=actor, models=data.get("models"), dataset_id=data.get("dataset_id"),
        dataset_version=data.get("dataset_version"), options={k: data[k] for k in options if k in data},
        name=data["name"], max_cost=data.get("max_cost"), idempotency_key=key, dry_run=dry_run,
        entitlements=entitlements, device_class=data.get("device_class") or "",
        held_out_of_job_id=data.get("held_out_of_job_id"))


class JobLeaderboardApi(OrganizationAPIView):
    serializer_class = JobSerializer

    @extend_schema(operation_id="jobs_leaderboard", responses=inline_serializer("JobLeaderboard", {
        "job_id": serializers.IntegerField(), "state": serializers.CharField(),
        "metric": serializers.CharField(allow_null=True, help_text="accuracy (classifiers) or exact_match (chat)"),
        "accuracy_tolerance": serializers.FloatField(), "device_class": serializers.CharField(allow_null=True),
        "held_out_of_job_id": serializers.IntegerField(allow_null=True, help_text=(
            "The fine-tune whose held-out rows were scored (its test set, attached or carved); null: every row of "
            "the dataset")),
        "scored_on": serializers.CharField(help_text="What was scored, in words"),
        "device_count": serializers.IntegerField(allow_null=True),
        "usd_per_second": serializers.CharField(allow_null=True, help_text="The plan's rate for the device class"),
        "recommended": serializers.CharField(allow_null=True, help_text="The key of the recommended model"),
        "rows": serializers.ListField(child=serializers.DictField())}),
        description="A comparison's (kind evaluate) table, best quality first: per model accuracy and macro-F1 (chat: "
                    "exact_match, token_f1), latency_ms_p50/p95 at batch 1, throughput_batch32, size_bytes, "
                    "cost_per_1m_usd (1e6 / throughput × the plan's usd_per_second for the device class × devices) "
                    "and `recommended`: the cheapest within accuracy_tolerance points of the best. Rows are empty "
                    "until the job succeeds. Another kind of job is a 404.")
    def get(self, request, job_id: int):
        from .leaderboard import board_of, evaluate_job_get

        return Response(board_of(evaluate_job_get(organization=self.organization, job_id=job_id)))


class JobLeaderboardCsvApi(OrganizationAPIView):
    serializer_class = JobSerializer

    @extend_schema(operation_id="jobs_leaderboard_csv", responses={(200, "text/csv"): OpenApiTypes.STR},
                   description="The leaderboard as a CSV download (the same rows and columns; cells that begin with "
                               "=, +, -, @, tab or CR are prefixed with an apostrophe). 409 until the job succeeds.")
    def get(self, request, job_id: int):
        from core.csv_export import csv_response

        from .leaderboard import csv_rows, evaluate_job_get

        name, header, rows = csv_rows(evaluate_job_get(organization=self.organization, job_id=job_id))
        return csv_response(name, header, rows)


class JobDetailApi(OrganizationAPIView):
    serializer_class = JobSerializer

    @extend_schema(operation_id="jobs_retrieve", responses=JobSerializer)
    def get(self, request, job_id: int):
        return Response(JobSerializer(selectors.job_get(organization=self.organization, job_id=job_id)).data)


class JobCancelApi(OrganizationAPIView):
    serializer_class = JobSerializer

    @extend_schema(operation_id="jobs_cancel", request=None, responses=JobSerializer,
                   description="A queued job never starts; a running one stops within an optimizer step and keeps its best checkpoint.")
    def post(self, request, job_id: int):
        lifecycle.job_cancel(organization=self.organization, actor=self.actor, job_id=job_id)
        return Response(JobSerializer(selectors.job_get(organization=self.organization, job_id=job_id)).data)


class JobPauseApi(OrganizationAPIView):
    serializer_class = JobSerializer

    @extend_schema(operation_id="jobs_pause", request=None, responses=JobSerializer, description=(
        "Fine-tunes only. A queued job is paused at once (state `paused`); a running one stops at its next optimizer "
        "step, saves a checkpoint, releases its worker and becomes `paused` (`pause_requested_at` set meanwhile). "
        "Billing stops with the attempt. 409 if the job ended, is paused, pausing or being cancelled."))
    def post(self, request, job_id: int):
        lifecycle.job_pause(organization=self.organization, actor=self.actor, job_id=job_id)
        return Response(JobSerializer(selectors.job_get(organization=self.organization, job_id=job_id)).data)


class JobResumeApi(OrganizationAPIView):
    serializer_class = JobSerializer

    @extend_schema(operation_id="jobs_resume", request=None, responses=JobSerializer, description=(
        "A paused job is queued again; its next attempt continues from the last checkpoint. The paused attempt does "
        "not count against max_attempts. 409 unless the job is paused."))
    def post(self, request, job_id: int):
        lifecycle.job_resume(organization=self.organization, actor=self.actor, job_id=job_id)
        return Response(JobSerializer(selectors.job_get(organization=self.organization, job_id=job_id)).data)


class _CursorListApi(OrganizationAPIView):
    pagination_class = None
    related = ""
    item_serializer = None

    def list_after(self, request, job_id):
        query = CursorQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        job = selectors.job_get(organization=self.organization, job_id=job_id)
        items = list(getattr(job, self.related).filter(id__gt=query.validated_data["after"]).order_by("id")[: query.validated_data["limit"]])
        return Response({"results": self.item_serializer(items, many=True).data,
                         "next_after": items[-1].id if items else query.validated_data["after"]})


class JobEventListApi(_CursorListApi):
    serializer_class = JobEventSerializer
    related, item_serializer = "events", JobEventSerializer

    @extend_schema(operation_id="job_events_list", parameters=[CursorQuerySerializer],
                   responses=inline_serializer("JobEventPage", {"results": JobEventSerializer(many=True), "next_after": serializers.IntegerField()}))
    def get(self, request, job_id: int):
        return self.list_after(request, job_id)


class JobMetricListApi(_CursorListApi):
    serializer_class = JobMetricSerializer
    related, item_serializer = "metrics", JobMetricSerializer

    @extend_schema(operation_id="job_metrics_list", parameters=[CursorQuerySerializer],
                   responses=inline_serializer("JobMetricPage", {"results": JobMetricSerializer(many=True), "next_after": serializers.IntegerField()}))
    def get(self, request, job_id: int):
        return self.list_after(request, job_id)


class JobArtifactListApi(OrganizationAPIView):
    serializer_class = JobArtifactSerializer
    pagination_class = None

    @extend_schema(operation_id="job_artifacts_list", responses=JobArtifactSerializer(many=True))
    def get(self, request, job_id: int):
        job = selectors.job_get(organization=self.organization, job_id=job_id)
        return Response(JobArtifactSerializer(job.artifacts.order_by("name"), many=True).data)


class JobArtifactDownloadApi(OrganizationAPIView):
    serializer_class = JobArtifactSerializer

    @extend_schema(operation_id="job_artifacts_download", responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request, job_id: int, name: str):
        job = selectors.job_get(organization=self.organization, job_id=job_id)
        return artifact_response(job=job, artifact=selectors.artifact_get(job=job, name=name))


# --- files of inputs for batch predictions -----------------------------------------------------------

class PredictionInputListApi(OrganizationAPIView):
    serializer_class = PredictionInputSerializer
    parser_classes = [StrictMultiPartParser, JSONParser]

    @extend_schema(operation_id="prediction_inputs_list", responses=PredictionInputSerializer(many=True))
    def get(self, request):
        page = self.paginate_queryset(prediction_inputs.prediction_input_list(organization=self.organization))
        return self.get_paginated_response(PredictionInputSerializer(page, many=True).data)

    @extend_schema(operation_id="prediction_inputs_create", request={"multipart/form-data": PredictionInputUploadSerializer},
                   responses={201: PredictionInputSerializer}, description=(
                       "Upload a file of inputs for batch predictions (labels and ids optional); every row is checked "
                       "before it is kept. Predict with POST /jobs, kind predict and inputs_id."))
    def post(self, request):
        refuse_oversized_body(request, limit=limits_for(organization=self.organization).max_file_bytes)
        payload = PredictionInputUploadSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        created = prediction_inputs.prediction_input_upload(
            organization=self.organization, actor=self.actor, uploaded=payload.validated_data["file"],
            name=payload.validated_data["name"])
        return Response(PredictionInputSerializer(created).data, status=status.HTTP_201_CREATED)


class PredictionInputDetailApi(OrganizationAPIView):
    serializer_class = PredictionInputSerializer

    @extend_schema(operation_id="prediction_inputs_retrieve", responses=PredictionInputSerializer)
    def get(self, request, input_id: int):
        return Response(PredictionInputSerializer(prediction_inputs.prediction_input_get(
            organization=self.organization, input_id=input_id)).data)

    @extend_schema(operation_id="prediction_inputs_destroy", responses={204: None},
                   description="Refused (409) while a predict job uses the file.")
    def delete(self, request, input_id: int):
        prediction_inputs.prediction_input_delete(organization=self.organization, actor=self.actor, input_id=input_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
