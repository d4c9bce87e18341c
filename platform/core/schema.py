"""OpenAPI: the API-key security scheme, the uniform error body, and the rules
that keep the schema truthful without per-view bookkeeping:

- error responses by kind of operation (LatheAutoSchema.error_statuses): every
  authenticated operation may answer 401/403/404/429; one that takes query or
  header parameters 400; every write 400, 409, 413 and 415 (its body is parsed
  and checked before the handler runs); a view adds what only its domain knows
  in `extra_error_statuses` (e.g. {"POST": ("402",)} where a job is started);
- a read-only field reached through a nullable relation, or that defaults to
  None, is `nullable` (e.g. `created_by` once that user is gone);
- a PATCH body (Patched*) has no required field and no additional properties,
  as OrganizationAPIView.patch_changes takes it;
- a decimal string's pattern is what DRF accepts (a digit at least, no sign
  when negatives are refused).
"""
from __future__ import annotations

from django.core.exceptions import FieldDoesNotExist
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import is_patched_serializer
from drf_spectacular.utils import inline_serializer
from rest_framework import serializers


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "lth_<prefix>_<secret>",
            "description": "An organization API key, created on the dashboard or through /api/v1/api-keys.",
        }


ErrorResponse = inline_serializer(
    name="ErrorResponse",
    fields={
        "error": inline_serializer(
            name="ErrorDetail",
            fields={
                "code": serializers.CharField(help_text="Stable machine-readable code, e.g. `invalid`, `not_found`."),
                "message": serializers.CharField(help_text="What went wrong, for a person."),
                "fields": serializers.DictField(
                    child=serializers.ListField(child=serializers.CharField()),
                    help_text="Per-field problems: {field: [messages]}; a nested field is named by its path "
                              "(`user.email`), a list item's problem stays under its field (`item 0: ...`).",
                ),
                "request_id": serializers.CharField(help_text="Quote it to support; also in X-Request-ID."),
            },
        )
    },
)

ERROR_STATUSES = {
    "400": "Invalid input: a body field or query parameter (named in `fields` and the message)",
    "401": "Missing, malformed, unknown, revoked or expired credentials",
    "402": "Payment required: the subscription is past due, or the free allowance or spend cap is used up",
    "403": "Not allowed for this role, key scope or plan",
    "404": "Not found in this organization",
    "409": "Conflicts with the current state (in use, already done, duplicate, Idempotency-Key reused)",
    "413": "The body or uploaded file is over the limit (the message names it)",
    "415": "Unsupported Content-Type, or (uploads) an unsupported file type or encoding",
    "429": "Rate limit exceeded (see Retry-After)",
    "502": "The inference worker could not answer with this model (the message says why)",
    "503": "No inference worker is running (`no_inference_worker`, see Retry-After)",
    "504": "No answer within LATHE_INFERENCE_TIMEOUT_S (`inference_timeout`)",
}
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def _nullable_source(serializer, field) -> bool:
    """Does `field` read its value through a relation that can be null?"""
    model = getattr(getattr(serializer, "Meta", None), "model", None)
    attrs = list(getattr(field, "source_attrs", None) or [])
    if model is None or not attrs or attrs == ["*"]:
        return False
    for attr in attrs[:-1] if len(attrs) > 1 else attrs:
        try:
            model_field = model._meta.get_field(attr)
        except FieldDoesNotExist:
            return False
        if not model_field.is_relation:
            return False
        if model_field.null:
            return True
        model = model_field.related_model
    return False


def _decimal_pattern(field: serializers.DecimalField) -> str:
    """What the field accepts as a string: at least one digit (DRF reads "" as null), no sign
    when it has no negative values, no more digits than max_digits / max_value allow."""
    places = field.decimal_places or 0
    whole = (field.max_digits - places) if field.max_digits else 30
    if field.max_value is not None:
        whole = min(whole, len(str(int(abs(field.max_value)))))
    sign = "" if field.min_value is not None and field.min_value >= 0 else "-?"
    fraction = rf"(?:\.\d{{0,{places}}})?" if places else ""
    return rf"^{sign}\d{{1,{whole}}}{fraction}$"


class LatheAutoSchema(AutoSchema):
    def error_statuses(self, operation: dict) -> list[str]:
        statuses = {"401", "403", "404", "429"}
        if any(p.get("in") in ("query", "header") for p in operation.get("parameters", [])):
            statuses.add("400")
        if self.method in WRITE_METHODS:
            # Every write's body is parsed, and held to core.parsers' limits, before its handler
            # runs (OrganizationAPIView.parse_body), declared or not.
            statuses |= {"400", "409", "413", "415"}
        extra = getattr(self.view, "extra_error_statuses", {}) or {}
        statuses |= {str(s) for s in extra.get(self.method, ())}
        return sorted(statuses)

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None or self.method == "OPTIONS":
            return operation
        responses = operation.setdefault("responses", {})
        for status in self.error_statuses(operation):
            if status not in responses:
                response = self._get_response_for_code(ErrorResponse, status, direction="response")
                response["description"] = ERROR_STATUSES[status]
                responses[status] = response
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _map_basic_serializer(self, serializer, direction):
        schema = super()._map_basic_serializer(serializer, direction)
        if is_patched_serializer(serializer, direction):
            schema["additionalProperties"] = False  # OrganizationAPIView.patch_changes refuses unknown fields
        return schema

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if isinstance(field, serializers.DecimalField) and schema and schema.get("type") == "string" and "pattern" in schema:
            schema["pattern"] = _decimal_pattern(field)
        if (
            direction == "response"
            and schema is not None
            and not schema.get("nullable")
            and field.parent is not None
            and (field.default is None or _nullable_source(field.parent, field))
        ):
            if "$ref" in schema:
                schema = {"allOf": [schema], "nullable": True}
            else:
                schema["nullable"] = True
        return schema
