"""The Stripe webhook endpoint: raw body, signature checked, stored, 200 at once."""
from __future__ import annotations

import logging

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from core.errors import ApplicationError

from . import webhooks

logger = logging.getLogger(__name__)


@csrf_exempt
@require_POST
def stripe_webhook(request):
    try:
        event = webhooks.verify(request.body, request.headers.get("Stripe-Signature", ""))
    except ApplicationError as error:
        logger.warning("Stripe webhook refused: %s", error.message)
        return JsonResponse({"error": {"code": error.code, "message": error.message}}, status=error.status_code)
    row, created = webhooks.receive(event)
    return JsonResponse({"received": True, "duplicate": not created, "id": row.stripe_id})
