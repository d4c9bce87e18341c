from __future__ import annotations

from django.db.models import QuerySet

from core.errors import NotFound
from tenancy.models import Organization

from .models import ApiKey


def api_key_list(*, organization: Organization, include_revoked: bool = True) -> QuerySet[ApiKey]:
    qs = ApiKey.objects.filter(organization=organization).select_related("created_by", "created_by_key").order_by("-created_at", "-id")
    if not include_revoked:
        qs = qs.filter(revoked_at__isnull=True)
    return qs


def api_key_get(*, organization: Organization, api_key_id) -> ApiKey:
    api_key = api_key_list(organization=organization).filter(pk=api_key_id).first()
    if api_key is None:
        raise NotFound("API key not found.")
    return api_key
