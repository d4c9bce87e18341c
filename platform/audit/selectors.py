from __future__ import annotations

from django.db.models import QuerySet

from .models import AuditEvent


def audit_event_list(*, organization, action: str | None = None) -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.filter(organization=organization).select_related("actor_user", "actor_api_key")
    if action:
        events = events.filter(action=action)
    return events.order_by("-created_at", "-id")
