"""The OpenAI-compatible surface under /v1/: the `openai` SDK works against Lathe with base_url and api_key
changed (docs/openai-compatible.md). Tenancy, scopes and rate limits are the native API's (OrganizationAPIView);
errors are reshaped into OpenAI's body by this module's exception handler only."""
from __future__ import annotations

from django.core.files.storage import default_storage
from django.http import FileResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.response import Response

from core.api import OrganizationAPIView
from core.errors import ApplicationError
from core.parsers import JSONParser, StrictMultiPartParser
from jobs import lifecycle

from . import ids, presenters, selectors, services
from .errors import openai_exception_handler


class OpenAIView(OrganizationAPIView):
    pagination_class = None
    schema = None  # not in the native /api/v1/ schema: this surface has its own, openapi.py (GET /v1/openapi.json)

    def get_exception_handler(self):
        return openai_exception_handler

    def limit(self, *, default: int) -> int:
        return selectors.page_limit(self.request.query_params.get("limit"), default=default)


class FileListApi(OpenAIView):
    parser_classes = [StrictMultiPartParser]

    def get(self, request):
        purpose = request.query_params.get("purpose")
        qs = selectors.file_list(organization=self.organization)
        if purpose not in (None, "", selectors.PURPOSE):
            qs = qs.none()
        order = request.query_params.get("order") or "desc"
        if order not in ("asc", "desc"):
            raise ApplicationError("order must be 'asc' or 'desc'.", fields={"order": ["asc or desc"]})
        rows, more = selectors.cursor_page(qs, kind="file", after=request.query_params.get("after"),
                                           limit=self.limit(default=selectors.MAX_PAGE), newest_first=order == "desc")
        return Response(presenters.list_object([presenters.file_object(v) for v in rows], has_more=more))

    def post(self, request):
        version = services.file_create(organization=self.organization, actor=self.actor,
                                       uploaded=request.FILES.get("file"), purpose=request.data.get("purpose"))
        return Response(presenters.file_object(version), status=status.HTTP_200_OK)


class FileDetailApi(OpenAIView):
    def get(self, request, file_id: str):
        return Response(presenters.file_object(selectors.file_get(organization=self.organization, file_id=file_id)))

    def delete(self, request, file_id: str):
        deleted = services.file_delete(organization=self.organization, actor=self.actor, file_id=file_id)
        return Response({"id": deleted, "object": "file", "deleted": True})


class AnyAcceptNegotiation(BaseContentNegotiation):
    """The SDK asks for `application/binary`; the content is the file, its errors JSON, whatever is accepted."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class FileContentApi(OpenAIView):
    content_negotiation_class = AnyAcceptNegotiation
    def get(self, request, file_id: str):
        version = selectors.file_get(organization=self.organization, file_id=file_id)
        return FileResponse(default_storage.open(version.source_file, "rb"), as_attachment=True,
                            filename=version.original_filename, content_type="application/octet-stream")


class FineTuningJobListApi(OpenAIView):
    parser_classes = [JSONParser]

    def get(self, request):
        metadata = {key[len("metadata["):-1]: value for key, value in request.query_params.items()
                    if key.startswith("metadata[") and key.endswith("]")}
        qs = selectors.fine_tuning_job_list(organization=self.organization, metadata=metadata)
        rows, more = selectors.cursor_page(qs, kind="job", after=request.query_params.get("after"), limit=self.limit(default=20))
        return Response(presenters.list_object([presenters.job_object(j, entitlements=self.entitlements) for j in rows],
                                               has_more=more))

    def post(self, request):
        job, created = services.fine_tuning_job_create(
            organization=self.organization, actor=self.actor, data=request.data,
            idempotency_key=request.headers.get("Idempotency-Key"), entitlements=self.entitlements)
        job = selectors.fine_tuning_job_get(organization=self.organization, job_id=ids.encode("job", job.pk))
        response = Response(presenters.job_object(job, entitlements=self.entitlements))
        if not created:
            response["Idempotent-Replayed"] = "true"
        return response


class FineTuningJobDetailApi(OpenAIView):
    def get(self, request, job_id: str):
        job = selectors.fine_tuning_job_get(organization=self.organization, job_id=job_id)
        return Response(presenters.job_object(job, entitlements=self.entitlements))


class FineTuningJobCancelApi(OpenAIView):
    parser_classes = [JSONParser]

    def post(self, request, job_id: str):
        job = selectors.fine_tuning_job_get(organization=self.organization, job_id=job_id)
        lifecycle.job_cancel(organization=self.organization, actor=self.actor, job_id=job.pk)
        job = selectors.fine_tuning_job_get(organization=self.organization, job_id=job_id)
        return Response(presenters.job_object(job, entitlements=self.entitlements))


class FineTuningJobPauseApi(OpenAIView):
    """Pause: a queued job is `paused` at once, a running one stops at its next step with a checkpoint
    (billing stops) and then reads `paused`. Resume: `queued` again, continuing from the last checkpoint."""

    parser_classes = [JSONParser]
    service = staticmethod(lifecycle.job_pause)

    def post(self, request, job_id: str):
        job = selectors.fine_tuning_job_get(organization=self.organization, job_id=job_id)
        self.service(organization=self.organization, actor=self.actor, job_id=job.pk)
        job = selectors.fine_tuning_job_get(organization=self.organization, job_id=job_id)
        return Response(presenters.job_object(job, entitlements=self.entitlements))


class FineTuningJobResumeApi(FineTuningJobPauseApi):
    service = staticmethod(lifecycle.job_resume)


class FineTuningJobEventListApi(OpenAIView):
    def get(self, request, job_id: str):
        job = selectors.fine_tuning_job_get(organization=self.organization, job_id=job_id)
        rows, more = selectors.cursor_page(job.events.all(), kind="event", after=request.query_params.get("after"),
                                           limit=self.limit(default=20))
        return Response(presenters.list_object([presenters.event_object(e) for e in rows], has_more=more))


class FineTuningJobCheckpointListApi(OpenAIView):
    def get(self, request, job_id: str):
        job = selectors.fine_tuning_job_get(organization=self.organization, job_id=job_id)
        rows, more = selectors.cursor_page(job.checkpoints.all(), kind="checkpoint", after=request.query_params.get("after"),
                                           limit=self.limit(default=10))
        return Response(presenters.list_object([presenters.checkpoint_object(c, job=job) for c in rows], has_more=more))


class ModelListApi(OpenAIView):
    def get(self, request):
        data = [presenters.base_model_object(m) for m in selectors.base_chat_models()]
        data += [presenters.fine_tuned_model_object(j) for j in selectors.fine_tuned_jobs(organization=self.organization)]
        return Response(presenters.list_object(data))


class ModelDetailApi(OpenAIView):
    parser_classes = [JSONParser]

    def get(self, request, model_id: str):
        base = selectors.base_chat_models().filter(slug=model_id).first()
        if base is not None:
            return Response(presenters.base_model_object(base))
        job = selectors.fine_tuned_job_get(organization=self.organization, model_id=model_id)
        return Response(presenters.fine_tuned_model_object(job))

    def delete(self, request, model_id: str):
        deleted = services.fine_tuned_model_delete(organization=self.organization, actor=self.actor, model_id=model_id)
        return Response({"id": deleted, "object": "model", "deleted": True})


class ChatCompletionsApi(OpenAIView):
    """A reply from one of the organization's chat fine-tunes, computed on an inference worker (docs/inference.md)."""

    parser_classes = [JSONParser]

    def post(self, request):
        from .chat import completion_create

        return Response(completion_create(organization=self.organization, data=request.data))


@csrf_exempt  # it changes nothing and reads no cookie; without this a POST would be CSRF's HTML 403
def unsupported_endpoint(request, *args, **kwargs):
    return JsonResponse({"error": {
        "message": f"Lathe's OpenAI-compatible API has no {request.method} {request.path[:200]}: it serves /v1/files, "
                   "/v1/fine_tuning/jobs, /v1/models and /v1/chat/completions (see docs/openai-compatible.md and GET /v1/openapi.json).",
        "type": "invalid_request_error", "param": None, "code": "unsupported_endpoint"}}, status=404)
