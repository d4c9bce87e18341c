"""OpenAPI: the API-key security scheme and the uniform error body on every operation."""
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
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
                    help_text="Per-field problems: {field: [messages]}.",
                ),
                "request_id": serializers.CharField(help_text="Quote it to support; also in X-Request-ID."),
            },
        )
    },
)

ERROR_STATUSES = {
    "400": "Invalid input",
    "401": "Missing, malformed, unknown, revoked or expired credentials",
    "403": "Not allowed for this role or key scope",
    "404": "Not found in this organization",
    "429": "Rate limit exceeded",
}


class LatheAutoSchema(AutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if self.method == "OPTIONS":
            return responses
        for status, description in ERROR_STATUSES.items():
            if status not in responses:
                response = self._get_response_for_code(ErrorResponse, status, direction=direction)
                response["description"] = description
                responses[status] = response
        return responses
