"""The Stripe webhook endpoint: raw body, signature checked, stored, 200 at once.
Every refusal is a 4xx with the uniform JSON error body (a body over
DATA_UPLOAD_MAX_MEMORY_SIZE: 413, answered by core.views.bad_request)."""
from __future__ import annotations

import logging

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from core.errors import ApplicationError
from core.exceptions import json_error_response

from . import webhooks

logger = logging.getLogger(__name__)


@csrf_exempt
def stripe_webhook(request):
    if request.method != "POST":
        response = json_error_response(status=405, code="method_not_allowed", message="Stripe delivers events by POST.")
        response["Allow"] = "POST"
        return response
    charset = request.content_params.get("charset", "utf-8").lower()
    if request.content_type != "application/json" or charset not in ("utf-8", "utf8"):
        return json_error_response(status=415, code="unsupported_media_type",
                                   message="Stripe sends events as application/json in UTF-8, not "
                                           f"{request.META.get('CONTENT_TYPE') or 'no type'}.")
    try:
        event = webhooks.verify(request.body, request.headers.get("Stripe-Signature", ""))
    except ApplicationError as error:
        logger.warning("Stripe webhook refused: %s", error.message)
        return json_error_response(status=error.status_code, code=error.code, message=error.message, fields=error.fields)
    row, created = webhooks.receive(event)
    return JsonResponse({"received": True, "duplicate": not created, "id": row.stripe_id})
