"""Writing the audit log. Every security-relevant service calls `audit_record`
inside its own transaction, so the record exists exactly when the change does.
The client IP and request id come from the request being handled (core's
middleware); a Celery task or webhook records without an IP."""
from __future__ import annotations

from core.client_ip import current_client_ip
from core.request_id import get_request_id

from .models import AuditEvent


def _actor_fields(actor) -> dict:
    """`actor` is a tenancy.actors.Actor, a user, or None (the system)."""
    if actor is None:
        return {"actor_label": "system"}
    if hasattr(actor, "role"):  # an Actor
        return {"actor_user": actor.user, "actor_api_key": actor.api_key, "actor_label": actor.label[:200]}
    return {"actor_user": actor, "actor_label": str(actor)[:200]}


def audit_record(*, organization, action: str, actor=None, target=None, target_label: str = "", data: dict | None = None) -> AuditEvent:
    request_id = get_request_id()
    return AuditEvent.objects.create(
        organization=organization,
        action=action,
        **_actor_fields(actor),
        target_type=target._meta.model_name if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_label=(target_label or (str(target) if target is not None else ""))[:200],
        data=data or {},
        ip_address=current_client_ip(),
        request_id="" if request_id == "-" else request_id,
    )
