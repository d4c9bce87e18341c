"""State changes for users and API keys (keyword-only)."""
from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.models import AuditAction
from audit.services import audit_record
from core.errors import ApplicationError, Conflict, NotFound, PermissionDenied, field_error
from tenancy.actors import Actor
from tenancy.models import ORGANIZATION_NAME_MAX_LENGTH, Organization, Role
from tenancy.services import organization_create

from . import keys
from .models import ApiKey, ApiKeyScope, User

API_KEY_NAME_MAX_LENGTH = 100


def clean_email(email: str) -> str:
    email = (email or "").strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        raise field_error("email", "Enter a valid e-mail address.") from None
    return email


@transaction.atomic
def user_signup(*, email: str, password: str, full_name: str = "", organization_name: str = "") -> tuple[User, Organization]:
    """A new user and their first organization, of which they are the owner."""
    email = clean_email(email)
    if User.objects.filter(email__iexact=email).exists():
        raise Conflict(
            "An account with this e-mail already exists. Log in, or reset your password.",
            code="email_taken",
            fields={"email": ["An account with this e-mail already exists."]},
        )
    candidate = User(email=email, full_name=(full_name or "").strip()[:150])
    try:
        password_validation.validate_password(password, user=candidate)
    except ValidationError as exc:
        raise ApplicationError(
            "The password is too weak: " + " ".join(exc.messages),
            code="weak_password",
            fields={"password": list(exc.messages)},
        ) from None
    try:
        with transaction.atomic():
            user = User.objects.create_user(email=email, password=password, full_name=candidate.full_name)
    except IntegrityError:  # a concurrent sign-up with the same address won
        raise Conflict(
            "An account with this e-mail already exists.",
            code="email_taken",
            fields={"email": ["An account with this e-mail already exists."]},
        ) from None
    if (organization_name or "").strip():
        try:
            organization = organization_create(name=organization_name, owner=user)
        except ApplicationError as error:  # the sign-up form calls the field organization_name
            if "name" in error.fields:
                error.fields["organization_name"] = error.fields.pop("name")
            raise
    else:
        organization = organization_create(name=default_organization_name(candidate.full_name or email.split("@")[0]),
                                           owner=user)
    return user, organization


def default_organization_name(who: str) -> str:
    """The organization name a sign-up without one gets ("Ada's organization"),
    the name shortened so that it fits the limit however long it is."""
    suffix = "'s organization"
    return f"{who.strip()[:ORGANIZATION_NAME_MAX_LENGTH - len(suffix)].rstrip()}{suffix}"


def _clean_scopes(scopes) -> list[str]:
    if not isinstance(scopes, (list, tuple)) or not scopes:
        raise field_error("scopes", f"Choose at least one scope of: {', '.join(ApiKeyScope.values)}.")
    unknown = sorted({s for s in scopes if s not in ApiKeyScope.values}, key=str)
    if unknown:
        raise field_error("scopes", f"Unknown scope(s): {', '.join(map(str, unknown))}. Valid: {', '.join(ApiKeyScope.values)}.")
    wanted = set(scopes)
    # Scopes nest: admin implies write, write implies read.
    if ApiKeyScope.ADMIN in wanted:
        wanted.add(ApiKeyScope.WRITE)
    if ApiKeyScope.WRITE in wanted:
        wanted.add(ApiKeyScope.READ)
    return [s for s in ApiKeyScope.values if s in wanted]


@transaction.atomic
def api_key_create(
    *, organization: Organization, actor: Actor, name: str, scopes, expires_at: datetime | None = None
) -> tuple[ApiKey, str]:
    """A new key. Returns the row and the full key, which is never retrievable again.

    The key acts for the person behind `actor` (the member, or the creator of the
    key that mints it), never with more than their current role."""
    if not actor.has_role(Role.ADMIN):
        raise PermissionDenied("Only an organization admin or owner can create API keys.")
    person = actor.person
    if person is None:
        raise PermissionDenied("An API key can only be created on behalf of a member of the organization.")
    name = (name or "").strip()
    if not name:
        raise field_error("name", "Give the key a name, e.g. 'CI pipeline'.", code="required")
    if len(name) > API_KEY_NAME_MAX_LENGTH:
        raise field_error("name", f"Key names are at most {API_KEY_NAME_MAX_LENGTH} characters (this one has {len(name)}).", code="max_length")
    scopes = _clean_scopes(scopes)
    if expires_at is not None and expires_at <= timezone.now():
        raise field_error("expires_at", "The expiry must be in the future.")
    # Counted under the organization's row lock, so two concurrent creates cannot both pass.
    Organization.objects.select_for_update().filter(pk=organization.pk).first()
    live = ApiKey.objects.filter(organization=organization, revoked_at__isnull=True).exclude(
        expires_at__lte=timezone.now()).count()
    limit = settings.LATHE_MAX_LIVE_API_KEYS
    if live >= limit:
        raise ApplicationError(
            f"This organization has {live} live API keys, the most allowed is {limit}. Revoke unused keys first.",
            code="api_key_limit", status=409,
        )
    generated = keys.generate_key()
    api_key = ApiKey.objects.create(
        organization=organization,
        name=name,
        prefix=generated.prefix,
        hashed_key=generated.hashed_key,
        scopes=scopes,
        created_by=person,
        created_by_key=actor.api_key,
        expires_at=expires_at,
    )
    audit_record(
        organization=organization, action=AuditAction.API_KEY_CREATED, actor=actor, target=api_key,
        target_label=f"{api_key.name} ({api_key.display_prefix})",
        data={"scopes": scopes, "acts_for": person.email, "expires_at": expires_at.isoformat() if expires_at else None,
              "minted_by_key": actor.api_key.display_prefix if actor.api_key else None},
    )
    return api_key, generated.full_key


@transaction.atomic
def api_key_revoke(*, organization: Organization, actor: Actor, api_key_id) -> ApiKey:
    if not actor.has_role(Role.ADMIN):
        raise PermissionDenied("Only an organization admin or owner can revoke API keys.")
    api_key = ApiKey.objects.select_for_update().filter(organization=organization, pk=api_key_id).first()
    if api_key is None:
        raise NotFound("API key not found.")
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.revoked_by = actor.person
        api_key.revoked_reason = f"Revoked by {actor.label}"[:200]
        api_key.save(update_fields=["revoked_at", "revoked_by", "revoked_reason"])
        audit_record(organization=organization, action=AuditAction.API_KEY_REVOKED, actor=actor, target=api_key,
                     target_label=f"{api_key.name} ({api_key.display_prefix})")
    return api_key


def purge_stale_login_attempts() -> int:
    """Forget failed-login records whose cool-off has passed."""
    from axes.models import AccessAttempt
    from django.conf import settings

    deleted, _ = AccessAttempt.objects.filter(attempt_time__lt=timezone.now() - settings.AXES_COOLOFF_TIME).delete()
    return deleted
