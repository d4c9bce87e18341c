"""Errors in OpenAI's shape, on /v1/ only: {"error": {"message", "type", "param", "code"}}.

The native handler (core.exceptions) decides status, code and message; this one reshapes its body so the
`openai` SDK raises its own classes (BadRequestError with .param, NotFoundError, RateLimitError, ...).
Headers such as Retry-After (429) and WWW-Authenticate (401) pass through untouched."""
from __future__ import annotations

from core.exceptions import api_exception_handler

# OpenAI's `type` per status (what its API answers).
ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "invalid_request_error",
               404: "invalid_request_error", 409: "invalid_request_error", 413: "invalid_request_error",
               415: "invalid_request_error", 429: "requests"}
# Lathe's field names → the OpenAI request's.
PARAM_NAMES = {"dataset_id": "training_file", "dataset_version": "training_file", "base_model": "model",
               "file": "file", "name": "suffix", "hyperparameters.epochs": "hyperparameters.n_epochs",
               "validation_dataset_id": "validation_file", "validation_dataset_version": "validation_file",
               "hyperparameters.learning_rate": "hyperparameters.learning_rate_multiplier"}
CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded"}


def openai_param(field: str | None) -> str | None:
    if not field:
        return None
    return PARAM_NAMES.get(field, field)


def openai_exception_handler(exc, context):
    response = api_exception_handler(exc, context)
    if response is None:
        return None
    native = (response.data or {}).get("error", {})
    fields = native.get("fields") or {}
    param = getattr(exc, "openai_param", None) or openai_param(next(iter(fields), None))
    status = response.status_code
    response.data = {"error": {
        "message": native.get("message") or "Error.",
        "type": ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"),
        "param": param,
        "code": CODES.get(status) if status in CODES else native.get("code"),
    }}
    return response
