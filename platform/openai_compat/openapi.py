"""The OpenAPI 3 schema of the OpenAI-compatible surface, served at GET /v1/openapi.json — separate from the
native /api/v1/schema (drf-spectacular): this surface has its own error body (OpenAI's), its own ids
(`file-…`, `ftjob-…`) and objects in OpenAI's shape, and its views carry no serializers (presenters.py builds
the objects), so the schema is written here beside them. tests/openai_compat/test_openapi.py keeps it true:
every /v1/ route with each of its methods is in it, it validates as OpenAPI 3.0, and the objects the presenters
return have exactly the properties it lists (docs/openai-compatible.md, "OpenAPI schema")."""
from __future__ import annotations

from django.http import JsonResponse
from django.views.decorators.http import require_GET

VERSION = "1.0.0"


def _nullable(schema: dict) -> dict:
    return {**schema, "nullable": True}


STRING, INTEGER, NUMBER, BOOLEAN = {"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}
OBJECT = {"type": "object", "additionalProperties": True}
AUTO_OR_INT = {"oneOf": [{"type": "string", "enum": ["auto"]}, {"type": "integer", "minimum": 1}]}
AUTO_OR_NUMBER = {"oneOf": [{"type": "string", "enum": ["auto"]}, {"type": "number", "exclusiveMinimum": True, "minimum": 0}]}


def _object(properties: dict, *, description: str = "", required: list | None = None) -> dict:
    schema = {"type": "object", "properties": properties}
    required = list(properties) if required is None else required
    if required:  # OpenAPI 3.0: a `required` list is never empty
        schema["required"] = required
    if description:
        schema["description"] = description
    return schema


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _list_of(item: str, *, cursor: bool = True) -> dict:
    properties = {"object": {"type": "string", "enum": ["list"]}, "data": {"type": "array", "items": ref(item)}}
    if cursor:
        properties.update(has_more=BOOLEAN, first_id=_nullable(STRING), last_id=_nullable(STRING))
    return _object(properties)


HYPERPARAMETERS = _object({
    "n_epochs": AUTO_OR_INT, "batch_size": AUTO_OR_INT,
    "learning_rate_multiplier": AUTO_OR_NUMBER,
}, required=[], description="Each `auto` (Lathe's auto value) or a value; the multiplier scales the learning rate "
                            "`auto` picks for the model and data (at most 100×).")
RESOLVED_HYPERPARAMETERS = _object({
    "n_epochs": {"oneOf": [INTEGER, {"type": "string", "enum": ["auto"]}]},
    "batch_size": {"oneOf": [INTEGER, {"type": "string", "enum": ["auto"]}]},
    "learning_rate_multiplier": _nullable(NUMBER),
}, description="As resolved for the job.")

SCHEMAS = {
    "Error": _object({"error": _object({
        "message": STRING, "type": {"type": "string", "example": "invalid_request_error"},
        "param": _nullable(STRING), "code": _nullable(STRING)})},
        description="OpenAI's error body (this surface only); the SDK raises BadRequestError (400), "
                    "AuthenticationError (401), PermissionDeniedError (403), NotFoundError (404), ConflictError (409), "
                    "RateLimitError (429, with Retry-After)."),
    "File": _object({
        "id": {"type": "string", "example": "file-12"}, "object": {"type": "string", "enum": ["file"]},
        "bytes": INTEGER, "created_at": INTEGER, "filename": STRING,
        "purpose": {"type": "string", "enum": ["fine-tune"]}, "status": {"type": "string", "enum": ["processed"]},
        "expires_at": _nullable(INTEGER), "status_details": _nullable(STRING),
        "lathe": _object({"dataset_id": INTEGER, "dataset_version": INTEGER, "task": STRING,
                          "conversations": INTEGER, "rejected_lines": INTEGER, "train_conversations": INTEGER,
                          "validation_conversations": INTEGER}, description="The Lathe dataset version behind the file."),
    }, description="A chat JSONL uploaded with purpose=fine-tune: a Lathe dataset version with its preflight report."),
    "FileList": _list_of("File"),
    "FileDeleted": _object({"id": STRING, "object": {"type": "string", "enum": ["file"]}, "deleted": BOOLEAN}),
    "Hyperparameters": HYPERPARAMETERS,
    "FineTuningJobCreate": _object({
        "model": {"type": "string", "description": "A Lathe base chat model (GET /v1/models); an OpenAI model name is "
                                                   "a 400 listing the available ones."},
        "training_file": {"type": "string", "example": "file-12"},
        "validation_file": {**_nullable(STRING), "description": "A file of conversations to validate on (early stopping, "
                                                                "the best checkpoint); training_file is then trained on "
                                                                "whole. Absent: 10% of training_file is held back."},
        "suffix": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$"},
        "seed": {"type": "integer", "minimum": 0, "maximum": 2147483647},
        "metadata": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 512}, "maxProperties": 16},
        "method": _object({"type": {"type": "string", "enum": ["supervised"]},
                           "supervised": _object({"hyperparameters": ref("Hyperparameters")}, required=[])},
                          required=["type"]),
        "hyperparameters": {**ref("Hyperparameters")},
        "integrations": {"type": "array", "items": OBJECT,
                         "description": "Accepted and kept, not run (reported in lathe.unsupported)."},
    }, required=["model", "training_file"]),
    "FineTuningJob": _object({
        "id": {"type": "string", "example": "ftjob-7"}, "object": {"type": "string", "enum": ["fine_tuning.job"]},
        "created_at": INTEGER,
        "error": _nullable(_object({"code": STRING, "message": STRING, "param": _nullable(STRING)})),
        "fine_tuned_model": {**_nullable(STRING), "description": "ft:<base>:<org-slug>:<suffix>:<id>, once succeeded."},
        "finished_at": _nullable(INTEGER), "hyperparameters": RESOLVED_HYPERPARAMETERS, "model": _nullable(STRING),
        "organization_id": STRING, "result_files": {"type": "array", "items": STRING, "maxItems": 0},
        "seed": INTEGER,
        "status": {"type": "string", "enum": ["validating_files", "queued", "running", "succeeded", "failed",
                                              "cancelled", "paused"]},
        "trained_tokens": _nullable(INTEGER), "training_file": STRING, "validation_file": _nullable(STRING),
        "estimated_finish": _nullable(INTEGER), "integrations": {"type": "array", "items": OBJECT},
        "metadata": _nullable({"type": "object", "additionalProperties": STRING}),
        "method": _object({"type": {"type": "string", "enum": ["supervised"]},
                           "supervised": _object({"hyperparameters": RESOLVED_HYPERPARAMETERS})}),
        "user_provided_suffix": _nullable(STRING),
        "lathe": _object({
            "job_id": INTEGER, "state": STRING, "method": STRING, "base_model": _nullable(STRING),
            "pause_requested": {"type": "boolean", "description": "A running job asked to pause: it reads `running` "
                                                                  "until it stops at its next step, then `paused`."},
            "progress": _object({"step": INTEGER, "total_steps": INTEGER, "epoch": NUMBER}),
            "billed_seconds": _nullable(NUMBER), "price_usd": _nullable(STRING), "max_cost_usd": _nullable(STRING),
            "model_deleted": BOOLEAN,
            "artifacts": {"type": "array", "items": _object({"name": STRING, "kind": STRING, "bytes": INTEGER,
                                                             "url": STRING})},
            "job_url": STRING, "unsupported": {"type": "object", "additionalProperties": STRING},
        }, description="Lathe's extension (the SDK keeps it in model_extra)."),
    }),
    "FineTuningJobList": _list_of("FineTuningJob"),
    "FineTuningJobEvent": _object({
        "id": STRING, "object": {"type": "string", "enum": ["fine_tuning.job.event"]}, "created_at": INTEGER,
        "level": {"type": "string", "enum": ["info", "warn", "error"]}, "message": STRING,
        "type": {"type": "string", "enum": ["message"]}, "data": _nullable(OBJECT)}),
    "FineTuningJobEventList": _list_of("FineTuningJobEvent"),
    "FineTuningJobCheckpoint": _object({
        "id": STRING, "object": {"type": "string", "enum": ["fine_tuning.job.checkpoint"]}, "created_at": INTEGER,
        "fine_tuned_model_checkpoint": STRING, "fine_tuning_job_id": STRING,
        "metrics": {"type": "object", "properties": {"step": NUMBER, "train_loss": NUMBER, "valid_loss": NUMBER,
                                                     "valid_mean_token_accuracy": NUMBER}, "required": ["step"]},
        "step_number": INTEGER, "lathe": _object({"is_best": BOOLEAN, "metrics": OBJECT})}),
    "FineTuningJobCheckpointList": _list_of("FineTuningJobCheckpoint"),
    "Model": _object({"id": STRING, "object": {"type": "string", "enum": ["model"]}, "created": _nullable(INTEGER),
                      "owned_by": {"type": "string", "description": "`lathe` (a base model) or `org-<slug>`."},
                      "lathe": OBJECT}),
    "ModelList": _list_of("Model", cursor=False),
    "ModelDeleted": _object({"id": STRING, "object": {"type": "string", "enum": ["model"]}, "deleted": BOOLEAN}),
    "ChatMessage": _object({
        "role": {"type": "string", "enum": ["system", "developer", "user", "assistant"]},
        "content": {"oneOf": [STRING, {"type": "array", "items": _object({
            "type": {"type": "string", "enum": ["text"]}, "text": STRING})}]},
        "name": STRING}, required=["role", "content"]),
    "ChatCompletionCreate": _object({
        "model": {"type": "string", "description": "A fine-tuned chat model of the organization (ft:…, GET /v1/models)."},
        "messages": {"type": "array", "items": ref("ChatMessage"), "minItems": 1, "maxItems": 64,
                     "description": "Text only; the last message from the user."},
        "max_completion_tokens": {"type": "integer", "minimum": 1, "maximum": 1024, "description": "Default 128"},
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": 1024, "description": "The older name of the same"},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2, "description": "0 (default): greedy"},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1, "exclusiveMinimum": True},
        "seed": {"type": "integer", "minimum": 0, "maximum": 2147483647},
        "n": {"type": "integer", "enum": [1]}, "stream": {"type": "boolean", "enum": [False]},
        "user": STRING, "metadata": OBJECT, "store": BOOLEAN,
    }, required=["model", "messages"], description="stop, penalties, logprobs, tools, response_format and streaming "
                                                  "are a 400 naming the parameter."),
    "ChatCompletion": _object({
        "id": {"type": "string", "example": "chatcmpl-12"}, "object": {"type": "string", "enum": ["chat.completion"]},
        "created": INTEGER, "model": STRING, "system_fingerprint": _nullable(STRING),
        "choices": {"type": "array", "items": _object({
            "index": INTEGER, "logprobs": _nullable(OBJECT),
            "finish_reason": {"type": "string", "enum": ["stop", "length"]},
            "message": _object({"role": {"type": "string", "enum": ["assistant"]}, "content": STRING,
                                "refusal": _nullable(STRING)})})},
        "usage": _object({"prompt_tokens": INTEGER, "completion_tokens": INTEGER, "total_tokens": INTEGER}),
        "lathe": _object({"warm": BOOLEAN, "latency_ms": NUMBER, "worker_ms": NUMBER, "load_ms": NUMBER,
                          "variant": STRING, "device_class": STRING, "job_id": INTEGER},
                         description="Lathe's extension: whether the model was loaded already, server-side latency, "
                                     "the billed worker time."),
    }),
}

ERRORS = {
    "400": "Invalid input; `param` names the parameter", "401": "Missing or invalid API key",
    "403": "The key lacks the scope", "404": "No such object in your organization",
    "409": "Conflict: the object's state forbids it (e.g. a file in use, a finished job)",
    "413": "Body over the size limit", "415": "Unsupported content type", "429": "Over the rate limit (Retry-After)",
}


def _param(name: str, where: str = "path", schema: dict | None = None, description: str = "", **extra) -> dict:
    param = {"name": name, "in": where, "required": where == "path", "schema": schema or STRING, **extra}
    if description:
        param["description"] = description
    return param


AFTER = _param("after", "query", description="The last id of the previous page.")
LIMIT = _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 100})


def _operation(operation_id: str, summary: str, response: str | None, *, params=(), body: dict | None = None,
               errors=("401", "403", "404", "429"), content_type: str = "application/json") -> dict:
    ok = ({"description": summary, "content": {content_type: {"schema": ref(response) if response else
                                                               {"type": "string", "format": "binary"}}}})
    operation = {"operationId": operation_id, "summary": summary, "tags": ["openai-compatible"],
                 "responses": {"200": ok, **{code: {"$ref": f"#/components/responses/E{code}"} for code in errors}}}
    if params:
        operation["parameters"] = list(params)
    if body:
        operation["requestBody"] = body
    return operation


WRITE_ERRORS = ("400", "401", "403", "404", "409", "413", "415", "429")
FILE_ID, JOB_ID, MODEL_ID = _param("file_id"), _param("job_id"), _param("model_id")
JSON_BODY = {"required": False, "content": {"application/json": {"schema": {"type": "object", "maxProperties": 0}}},
             "description": "No fields are read; a malformed body is still refused."}


def build() -> dict:
    job_action = {
        "cancel": "Cancel: a queued or paused job ends at once; a running one stops at its next step, keeping its "
                  "best checkpoint.",
        "pause": "Pause: a queued job is paused at once; a running one stops at its next step with a checkpoint, "
                 "releases its worker and stops billing, then reads `paused`.",
        "resume": "Resume a paused job: queued again, continuing from its last checkpoint.",
    }
    paths = {
        "/v1/files": {
            "get": _operation("files_list", "List fine-tune files, newest first", "FileList", params=(
                _param("purpose", "query", {"type": "string"}), _param("order", "query", {"type": "string", "enum": ["asc", "desc"]}),
                AFTER, LIMIT), errors=("400", "401", "403", "429")),
            "post": _operation("files_create", "Upload a chat JSONL (purpose=fine-tune)", "File", body={
                "required": True, "content": {"multipart/form-data": {"schema": _object({
                    "file": {"type": "string", "format": "binary"},
                    "purpose": {"type": "string", "enum": ["fine-tune"]}})}}}, errors=WRITE_ERRORS),
        },
        "/v1/files/{file_id}": {
            "parameters": [FILE_ID],
            "get": _operation("files_retrieve", "A file", "File"),
            "delete": _operation("files_delete", "Delete a file (409 while a job uses it)", "FileDeleted", errors=WRITE_ERRORS),
        },
        "/v1/files/{file_id}/content": {
            "parameters": [FILE_ID],
            "get": _operation("files_content", "The file as uploaded", None, content_type="application/octet-stream"),
        },
        "/v1/fine_tuning/jobs": {
            "get": _operation("fine_tuning_jobs_list", "List fine-tuning jobs, newest first", "FineTuningJobList", params=(
                AFTER, LIMIT, _param("metadata", "query", {"type": "object", "additionalProperties": STRING},
                                     style="deepObject", explode=True, description="metadata[key]=value filters.")),
                errors=("400", "401", "403", "429")),
            "post": _operation("fine_tuning_jobs_create", "Create a fine-tuning job (a Lathe chat fine-tune, LoRA)",
                               "FineTuningJob", params=(_param("Idempotency-Key", "header", {"type": "string", "maxLength": 200}),),
                               body={"required": True, "content": {"application/json": {"schema": ref("FineTuningJobCreate")}}},
                               errors=("400", "401", "402", "403", "404", "409", "413", "415", "429")),
        },
        "/v1/fine_tuning/jobs/{job_id}": {
            "parameters": [JOB_ID],
            "get": _operation("fine_tuning_jobs_retrieve", "A fine-tuning job", "FineTuningJob"),
        },
        **{f"/v1/fine_tuning/jobs/{{job_id}}/{action}": {
            "parameters": [JOB_ID],
            "post": _operation(f"fine_tuning_jobs_{action}", summary, "FineTuningJob", body=JSON_BODY, errors=WRITE_ERRORS),
        } for action, summary in job_action.items()},
        "/v1/fine_tuning/jobs/{job_id}/events": {
            "parameters": [JOB_ID],
            "get": _operation("fine_tuning_jobs_events", "The job's events, newest first", "FineTuningJobEventList",
                              params=(AFTER, LIMIT), errors=("400", "401", "403", "404", "429")),
        },
        "/v1/fine_tuning/jobs/{job_id}/checkpoints": {
            "parameters": [JOB_ID],
            "get": _operation("fine_tuning_jobs_checkpoints", "The job's checkpoints, newest first",
                              "FineTuningJobCheckpointList", params=(AFTER, LIMIT), errors=("400", "401", "403", "404", "429")),
        },
        "/v1/models": {"get": _operation("models_list", "Base chat models and the organization's fine-tunes", "ModelList",
                                         errors=("401", "403", "429"))},
        "/v1/models/{model_id}": {
            "parameters": [MODEL_ID],
            "get": _operation("models_retrieve", "A model", "Model"),
            "delete": _operation("models_delete", "Delete a fine-tuned model's artifacts (base models: 403)", "ModelDeleted",
                                 errors=WRITE_ERRORS),
        },
        "/v1/chat/completions": {
            "post": _operation("chat_completions_create", "A reply from a fine-tuned chat model (ft:…), computed on an "
                               "inference worker; 503 when none is running, 504 past the time-out", "ChatCompletion",
                               body={"required": True, "content": {"application/json": {"schema": ref("ChatCompletionCreate")}}},
                               errors=("400", "401", "402", "403", "404", "413", "415", "429", "502", "503", "504")),
        },
        "/v1/openapi.json": {"get": {"operationId": "openapi", "summary": "This schema", "tags": ["openai-compatible"],
                                     "security": [], "responses": {"200": {"description": "OpenAPI 3.0",
                                                                           "content": {"application/json": {"schema": OBJECT}}}}}},
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "Lathe OpenAI-compatible fine-tuning API", "version": VERSION, "description": (
            "OpenAI's fine-tuning, files and models endpoints on Lathe: the official `openai` SDK works with `base_url` "
            "set to `<lathe>/v1` and `api_key` to a Lathe key. Errors use OpenAI's body. The native API is "
            "documented separately at /api/v1/schema. Guide: docs/openai-compatible.md, docs/openai-migration.md.")},
        "servers": [{"url": "/"}],
        "tags": [{"name": "openai-compatible", "description": "The /v1/ surface"}],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "lth_<prefix>_<secret>",
                                               "description": "A Lathe API key, scoped to its organization."}},
            "schemas": SCHEMAS,
            "responses": {f"E{code}": {"description": text, "content": {"application/json": {"schema": ref("Error")}}}
                          for code, text in {**ERRORS, "402": "Payment required (plan or spend cap)",
                                             "502": "The model could not answer", "503": "No inference worker is running "
                                             "(Retry-After)", "504": "No answer within the time-out"}.items()},
        },
    }


@require_GET
def openapi_json(request):
    """Public, as /api/v1/schema is: it describes the surface, never an organization's data."""
    return JsonResponse(build(), json_dumps_params={"indent": 1})
