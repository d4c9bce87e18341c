"""`Authorization: Bearer lth_...` for the REST API.

Every way a key can be wrong answers 401 with a message that says which way,
without revealing whether another organization's key exists.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from django.core.cache import cache
from django.utils import timezone
from rest_framework import authentication, exceptions

from audit.models import AuditAction
from audit.services import audit_record
from tenancy.models import Membership

from .keys import KEY_PREFIX, key_matches, parse_key
from .models import ApiKey

LAST_USED_RESOLUTION = timedelta(minutes=1)
logger = logging.getLogger(__name__)


def _reject(message: str, *, reason: str, prefix: str | None = None):
    # Security audit trail; the request id is added by the log filter.
    logger.info("API key rejected: %s (prefix=%s)", reason, prefix or "-")
    return exceptions.AuthenticationFailed(message)


class ApiKeyPrincipal:
    """`request.user` when a request is authenticated by an API key: the key acts,
    not a person. Not a model; has no row, no password, no session."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(self, api_key: ApiKey):
        self.api_key = api_key

    def __str__(self) -> str:
        return f"api-key:{self.api_key.prefix}"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        parts = header.split()
        if len(parts) != 2 or parts[0].lower() != self.keyword.lower():
            raise _reject("Malformed Authorization header: expected 'Authorization: Bearer <API key>'.", reason="malformed header")
        candidate = parts[1]
        if not candidate.startswith(KEY_PREFIX):
            raise _reject(
                f"Not a Lathe API key: keys start with '{KEY_PREFIX}'. Create one under Settings → API keys.",
                reason="wrong prefix",
            )
        prefix = parse_key(candidate)
        if prefix is None:
            raise _reject(
                "Malformed API key: expected 'lth_' followed by 12 and 40 letters or digits separated by '_'.",
                reason="malformed key",
            )
        api_key = ApiKey.objects.select_related("organization", "created_by").filter(prefix=prefix).first()
        if api_key is None or not key_matches(candidate, api_key.hashed_key):
            raise _reject("Unknown API key.", reason="unknown", prefix=prefix)
        if api_key.revoked_at is not None:
            raise _reject(f"This API key was revoked on {api_key.revoked_at:%Y-%m-%d %H:%M} UTC.", reason="revoked", prefix=prefix)
        if api_key.is_expired:
            raise _reject(f"This API key expired on {api_key.expires_at:%Y-%m-%d %H:%M} UTC.", reason="expired", prefix=prefix)
        if api_key.organization.deactivated_at is not None:
            raise _reject("This API key's organization is deactivated.", reason="organization deactivated", prefix=prefix)
        creator_role = self._creator_role(api_key)
        if creator_role is None:
            self._record_refusal(api_key)
            raise _reject(
                "This API key's creator is no longer a member of the organization, so the key no longer works. "
                "An admin can create a new one under Settings → API keys.",
                reason="creator left", prefix=prefix,
            )
        api_key.creator_role = creator_role
        self._touch(api_key)
        return ApiKeyPrincipal(api_key), api_key

    def authenticate_header(self, request):
        # Makes DRF answer 401 (not 403) when credentials are missing or wrong.
        return f'{self.keyword} realm="api"'

    @staticmethod
    def _creator_role(api_key: ApiKey) -> str | None:
        """The creator's current role in the key's organization; None once they
        left it or their account is gone or deactivated."""
        if api_key.created_by_id is None:
            return None
        return (
            Membership.objects.filter(
                organization_id=api_key.organization_id, user_id=api_key.created_by_id, user__is_active=True
            ).values_list("role", flat=True).first()
        )

    @staticmethod
    def _record_refusal(api_key: ApiKey) -> None:
        """Into the audit log, at most once a minute per key (a retrying client must
        not flood it)."""
        if cache.add(f"audit:key-refused:{api_key.pk}", 1, timeout=60):
            audit_record(
                organization=api_key.organization, action=AuditAction.API_KEY_REFUSED_CREATOR_LEFT,
                target=api_key, target_label=api_key.display_prefix,
                data={"name": api_key.name, "created_by": api_key.created_by.email if api_key.created_by else None},
            )

    @staticmethod
    def _touch(api_key: ApiKey) -> None:
        """Record use at most once a minute per key: a write per request would make
        every read a write."""
        now = timezone.now()
        if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_RESOLUTION:
            ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
            api_key.last_used_at = now
