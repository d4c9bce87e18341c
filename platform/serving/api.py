"""POST /api/v1/jobs/{job_id}/predict and /api/v1/models/{model_id}/predict: a synchronous answer from the
model (classifier: labels with probabilities; chat model: a reply), computed on an inference worker."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from core.api import OrganizationAPIView
from core.errors import ApplicationError
from jobs.model_sources import CHAT, source_get

from . import services, validation
from .serializers import JobPredictRequestSerializer, PredictRequestSerializer, PredictResponseSerializer

CLASSIFIER_FIELDS = {"inputs"}
CHAT_FIELDS = {"messages", "max_new_tokens", "temperature", "top_p", "seed"}
DESCRIPTION = (
    "Classifiers: `{\"inputs\": [\"text\", …]}` (pairs: `{\"text_a\", \"text_b\"}` objects) → per input the label, its "
    "probability and every label's. Chat models: `{\"messages\": [...], \"max_new_tokens\"?, \"temperature\"?, "
    "\"top_p\"?, \"seed\"?}` → the reply and token counts. Answered synchronously by an inference worker that keeps "
    "recently used models loaded (`warm`); billed per second of worker time (model load included when cold) at the "
    "plan's rate, its own line in billing/usage. 503 `no_inference_worker` (with Retry-After) when none is running, "
    "504 `inference_timeout` past LATHE_INFERENCE_TIMEOUT_S.")


def _body(request, allowed: set[str]) -> dict:
    data = request.data
    if not isinstance(data, dict):
        raise ApplicationError("The body must be a JSON object: {\"inputs\": [...]} or {\"messages\": [...]}.",
                               code="invalid", fields={"body": ["must be a JSON object"]})
    validation.unknown_keys(data, allowed)
    return data


def answer(*, organization, source, data: dict) -> dict:
    if source.family == CHAT:
        extra = sorted(set(data) & CLASSIFIER_FIELDS)
        if extra:
            raise validation.field_error(extra[0], "This is a chat model: send messages, not inputs.", code="wrong_model_kind")
        return services.chat(organization=organization, source=source, messages=data.get("messages"),
                             max_new_tokens=data.get("max_new_tokens"), temperature=data.get("temperature"),
                             top_p=data.get("top_p"), seed=data.get("seed"))
    extra = sorted(set(data) & CHAT_FIELDS)
    if extra:
        raise validation.field_error(extra[0], f"This model is a classifier: {extra[0]} applies to chat models; send "
                                                "inputs.", code="wrong_model_kind")
    return services.predict(organization=organization, source=source, inputs=data.get("inputs"))


class PredictApi(OrganizationAPIView):
    serializer_class = PredictResponseSerializer
    extra_error_statuses = {"POST": ("402", "502", "503", "504")}


class JobPredictApi(PredictApi):
    @extend_schema(operation_id="jobs_predict", request=JobPredictRequestSerializer, responses=PredictResponseSerializer,
                   description="Try a succeeded job's model (any of its model archives). " + DESCRIPTION)
    def post(self, request, job_id: int):
        data = _body(request, CLASSIFIER_FIELDS | CHAT_FIELDS | {"artifact"})
        artifact = data.get("artifact")
        if artifact is not None and (not isinstance(artifact, str) or not artifact or len(artifact) > 100
                                     or "\x00" in artifact):
            raise validation.field_error("artifact", "artifact must be the name of one of the job's model archives, "
                                                     "e.g. model.zip or model-onnx-int8.zip.")
        source = source_get(organization=self.organization, job_id=job_id, artifact=artifact, field="job_id")
        return Response(answer(organization=self.organization, source=source,
                               data={k: v for k, v in data.items() if k != "artifact"}))


class ModelPredictApi(PredictApi):
    @extend_schema(operation_id="models_predict", request=PredictRequestSerializer, responses=PredictResponseSerializer,
                   description="Try an uploaded model. " + DESCRIPTION)
    def post(self, request, model_id: int):
        data = _body(request, CLASSIFIER_FIELDS | CHAT_FIELDS)
        source = source_get(organization=self.organization, uploaded_model_id=model_id, field="model_id")
        return Response(answer(organization=self.organization, source=source, data=data))
