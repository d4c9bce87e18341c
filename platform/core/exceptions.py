"""The uniform error body for every 4xx/5xx the API answers:

    {"error": {"code": "...", "message": "...", "fields": {...}, "request_id": "..."}}
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_default_handler

from .errors import ApplicationError
from .request_id import get_request_id

logger = logging.getLogger(__name__)


def error_body(*, code: str, message: str, fields: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "fields": fields or {}, "request_id": get_request_id()}}


def _flatten_detail(detail) -> list[str]:
    if isinstance(detail, dict):
        out = []
        for key, value in detail.items():
            out.extend(f"{key}: {m}" for m in _flatten_detail(value))
        return out
    if isinstance(detail, list):
        out = []
        for item in detail:
            out.extend(_flatten_detail(item))
        return out
    return [str(detail)]


def _is_index(key) -> bool:
    return isinstance(key, int) or str(key).isdigit()


def _fields_from_detail(detail, prefix: str = "") -> dict:
    """{field: [messages]}, always one level, as the schema says: a list item's
    problems stay under its field, the message naming the item (`scopes`:
    ["item 0: ..."]); a nested object's are named by path (`user.email`)."""
    if not isinstance(detail, dict):
        return {}
    fields = {}
    for key, value in detail.items():
        if key == "non_field_errors" and not prefix:
            continue
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value and all(_is_index(k) for k in value):
            fields[path] = [f"item {k}: {m}" for k, v in value.items() for m in _flatten_detail(v)]
        elif isinstance(value, dict):
            fields.update(_fields_from_detail(value, path))
        else:
            fields[path] = _flatten_detail(value)
    return fields


def request_too_big_message() -> str:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return (f"The request body is larger than the limit of {limit:,} bytes ({limit / 1024 / 1024:.1f} MiB) "
            "for a JSON or form body. Upload files as multipart/form-data.")


def suspicious_request_error(exc: SuspiciousOperation) -> ApplicationError:
    """Django's refusals of a request body (too big, too many fields or files):
    the client's fault, so a 4xx naming the limit, never a 500."""
    if isinstance(exc, RequestDataTooBig):
        return ApplicationError(request_too_big_message(), code="request_too_large", status=413)
    return ApplicationError(f"The request was refused: {exc}", code="bad_request", status=400)


def api_exception_handler(exc, context):
    if isinstance(exc, SuspiciousOperation):
        exc = suspicious_request_error(exc)
    if isinstance(exc, ApplicationError):
        return Response(
            error_body(code=exc.code, message=exc.message, fields=exc.fields), status=exc.status_code,
            headers=getattr(exc, "headers", None),  # e.g. Retry-After on serving's 503
        )
    if isinstance(exc, DjangoValidationError):
        exc = drf_exceptions.ValidationError(detail=getattr(exc, "message_dict", None) or exc.messages)
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    if isinstance(exc, DjangoPermissionDenied):
        exc = drf_exceptions.PermissionDenied()

    response = drf_default_handler(exc, context)
    if response is None:
        logger.exception("Unhandled API error", exc_info=exc)
        return Response(
            error_body(code="server_error", message="Something went wrong on our side; it has been logged."),
            status=500,
        )

    if isinstance(exc, drf_exceptions.ValidationError):
        fields = _fields_from_detail(exc.detail)
        problems = _flatten_detail(exc.detail)
        message = "Invalid input: " + "; ".join(problems[:5]) if problems else "Invalid input."
        body = error_body(code="invalid", message=message, fields=fields)
    else:
        code = exc.get_codes() if hasattr(exc, "get_codes") else "error"
        if not isinstance(code, str):
            code = "error"
        detail = exc.detail if isinstance(exc.detail, str) else "; ".join(_flatten_detail(exc.detail))
        body = error_body(code=code, message=str(detail))
    response.data = body
    return response


def json_error_response(*, status: int, code: str, message: str, fields: dict | None = None) -> JsonResponse:
    return JsonResponse(error_body(code=code, message=message, fields=fields), status=status)
