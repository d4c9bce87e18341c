"""State changes for organizations, memberships and invitations (keyword-only)."""
from __future__ import annotations

import hashlib
from datetime import timedelta
import logging
import secrets

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from accounts.models import ApiKey
from audit.models import AuditAction
from audit.services import audit_record
from core.errors import ApplicationError, Conflict, NotFound, PermissionDenied, field_error

from .actors import Actor
from .models import (
    ORGANIZATION_NAME_MAX_LENGTH,
    ROLE_RANK,
    SLUG_MAX_LENGTH,
    Invitation,
    Membership,
    Organization,
    Role,
    slug_validator,
)

logger = logging.getLogger(__name__)


# --- organizations ------------------------------------------------------------

def clean_organization_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise field_error("name", "An organization name is required.", code="required")
    if len(name) > ORGANIZATION_NAME_MAX_LENGTH:
        raise field_error(
            "name",
            f"Organization names are at most {ORGANIZATION_NAME_MAX_LENGTH} characters (this one has {len(name)}).",
            code="max_length",
        )
    return name


def _unique_slug(base: str) -> str:
    base = (slugify(base)[: SLUG_MAX_LENGTH - 7].strip("-")) or "org"
    candidate = base
    while Organization.objects.filter(slug=candidate).exists():
        candidate = f"{base}-{secrets.token_hex(3)}"
    return candidate


def clean_slug(slug: str) -> str:
    from django.core.exceptions import ValidationError

    slug = (slug or "").strip().lower()
    try:
        slug_validator(slug)
    except ValidationError as exc:
        raise field_error("slug", exc.messages[0]) from None
    return slug


@transaction.atomic
def organization_create(*, name: str, owner, slug: str | None = None) -> Organization:
    """A new organization with `owner` as its first owner."""
    name = clean_organization_name(name)
    slug = clean_slug(slug) if slug else _unique_slug(name)
    if Organization.objects.filter(slug=slug).exists():
        raise field_error("slug", f"The slug '{slug}' is taken.", code="unique")
    try:
        with transaction.atomic():
            organization = Organization.objects.create(name=name, slug=slug)
    except IntegrityError:
        raise field_error("slug", f"The slug '{slug}' is taken.", code="unique") from None
    Membership.objects.create(organization=organization, user=owner, role=Role.OWNER)
    return organization


@transaction.atomic
def organization_update(*, organization: Organization, actor: Actor, name: str | None = None) -> Organization:
    _require(actor, Role.ADMIN, "change the organization's settings")
    if name is not None:
        organization.name = clean_organization_name(name)
    organization.save(update_fields=["name", "updated_at"])
    return organization


# --- memberships ----------------------------------------------------------------

def _require(actor: Actor, minimum: str, what: str) -> None:
    if not actor.has_role(minimum):
        raise PermissionDenied(f"Only an organization {Role(minimum).label.lower()} or above can {what}.")


def _locked_memberships(organization: Organization, membership_id) -> tuple[list[Membership], Membership]:
    """All of the organization's memberships, locked, and the one acted on (404 if not theirs).
    Locking every row means two concurrent demotions cannot both see "another owner exists"."""
    memberships = list(Membership.objects.select_for_update().filter(organization=organization).order_by("id"))
    target = next((m for m in memberships if str(m.pk) == str(membership_id)), None)
    if target is None:
        raise NotFound("Member not found.")
    return memberships, target


def _ensure_another_owner(memberships: list[Membership], leaving: Membership, what: str) -> None:
    owners = [m for m in memberships if m.role == Role.OWNER and m.pk != leaving.pk]
    if leaving.role == Role.OWNER and not owners:
        raise ApplicationError(
            f"Cannot {what}: {leaving.user.email} is the last owner. Make another member an owner first.",
            code="last_owner",
            status=409,
        )


def _can_manage(actor: Actor, target: Membership) -> bool:
    """Admins manage members and admins; only owners manage owners."""
    return ROLE_RANK[Role(actor.role)] >= ROLE_RANK[Role(target.role)] and actor.has_role(Role.ADMIN)


@transaction.atomic
def membership_change_role(*, organization: Organization, actor: Actor, membership_id, role: str) -> Membership:
    if role not in Role.values:
        raise field_error("role", f"Unknown role '{role}'; choose one of {', '.join(Role.values)}.")
    memberships, target = _locked_memberships(organization, membership_id)
    if not _can_manage(actor, target):
        raise PermissionDenied(f"You cannot change the role of a {target.get_role_display().lower()}.")
    if role == Role.OWNER and not actor.has_role(Role.OWNER):
        raise PermissionDenied("Only an owner can make someone an owner.")
    if target.role == role:
        return target
    if role != Role.OWNER:
        _ensure_another_owner(memberships, target, "change the role")
    previous = target.role
    target.role = role
    target.save(update_fields=["role", "updated_at"])
    # Their API keys stay, and from now on act with at most the new role (Actor.for_api_key).
    audit_record(organization=organization, action=AuditAction.MEMBER_ROLE_CHANGED, actor=actor, target=target,
                 target_label=target.user.email, data={"from": previous, "to": role})
    return target


def keys_acting_for(*, organization: Organization, user) -> list[ApiKey]:
    """The live API keys that act for `user` in `organization`: they die with the membership."""
    return list(
        ApiKey.objects.filter(organization=organization, created_by=user, revoked_at__isnull=True)
        .exclude(expires_at__lte=timezone.now()).order_by("-created_at", "-id")
    )


@transaction.atomic
def membership_remove(*, organization: Organization, actor: Actor, membership_id) -> list[ApiKey]:
    """Remove a member, or leave (a member removing themselves). The API keys
    they created are revoked with the membership; returns them."""
    memberships, target = _locked_memberships(organization, membership_id)
    leaving_self = actor.user is not None and target.user_id == actor.user.pk
    if not leaving_self and not _can_manage(actor, target):
        raise PermissionDenied(f"You cannot remove a {target.get_role_display().lower()}.")
    _ensure_another_owner(memberships, target, "leave the organization" if leaving_self else "remove this member")
    now = timezone.now()
    revoked = keys_acting_for(organization=organization, user=target.user)
    reason = f"{target.user.email} left the organization" if leaving_self else f"{target.user.email} was removed from the organization"
    ApiKey.objects.filter(pk__in=[key.pk for key in revoked]).update(
        revoked_at=now, revoked_by=actor.person, revoked_reason=reason[:200])
    target.delete()
    audit_record(
        organization=organization, action=AuditAction.MEMBER_LEFT if leaving_self else AuditAction.MEMBER_REMOVED,
        actor=actor, target=target.user, target_label=target.user.email,
        data={"role": target.role, "revoked_api_keys": [f"{key.name} ({key.display_prefix})" for key in revoked]},
    )
    return revoked


# --- invitations ----------------------------------------------------------------

def hash_invitation_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _send_invitation_email(*, invitation: Invitation, token: str, inviter_label: str) -> None:
    accept_url = settings.SITE_URL.rstrip("/") + reverse("dashboard:invitation-accept", args=[token])
    context = {"invitation": invitation, "accept_url": accept_url, "inviter": inviter_label}
    send_mail(
        subject=f"You are invited to {invitation.organization.name} on Lathe",
        message=render_to_string("emails/invitation.txt", context),
        from_email=None,
        recipient_list=[invitation.email],
    )


@transaction.atomic
def invitation_create(*, organization: Organization, actor: Actor, email: str, role: str = Role.MEMBER) -> tuple[Invitation, str]:
    """Invite an e-mail address. Returns the invitation and its one-time token
    (mailed; never stored). Inviting the same address again replaces the open one."""
    from django.core.exceptions import ValidationError
    from django.core.validators import validate_email

    _require(actor, Role.ADMIN, "invite members")
    email = (email or "").strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        raise field_error("email", f"'{email[:100]}' is not a valid e-mail address.") from None
    if role not in Role.values:
        raise field_error("role", f"Unknown role '{role}'; choose one of {', '.join(Role.values)}.")
    if role == Role.OWNER and not actor.has_role(Role.OWNER):
        raise PermissionDenied("Only an owner can invite another owner.")
    if Membership.objects.filter(organization=organization, user__email__iexact=email).exists():
        raise Conflict(f"{email} is already a member of {organization.name}.", fields={"email": ["Already a member."]})

    now = timezone.now()
    Invitation.objects.select_for_update().filter(
        organization=organization, email=email, accepted_at__isnull=True, revoked_at__isnull=True
    ).update(revoked_at=now, updated_at=now)
    token = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        organization=organization,
        email=email,
        role=role,
        token_hash=hash_invitation_token(token),
        invited_by=actor.person,
        expires_at=now + settings.INVITATION_TTL,
    )
    audit_record(organization=organization, action=AuditAction.INVITATION_SENT, actor=actor, target=invitation,
                 target_label=email, data={"role": role})
    transaction.on_commit(
        lambda: _send_invitation_email(invitation=invitation, token=token, inviter_label=actor.label)
    )
    return invitation, token


@transaction.atomic
def invitation_revoke(*, organization: Organization, actor: Actor, invitation_id) -> Invitation:
    from .selectors import invitation_get

    _require(actor, Role.ADMIN, "revoke invitations")
    invitation = invitation_get(organization=organization, invitation_id=invitation_id)
    if invitation.status != "pending":
        raise Conflict(f"This invitation is already {invitation.status}.", code=f"invitation_{invitation.status}")
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at", "updated_at"])
    audit_record(organization=organization, action=AuditAction.INVITATION_REVOKED, actor=actor, target=invitation,
                 target_label=invitation.email)
    return invitation


def invitation_for_token(*, token: str) -> Invitation:
    """The invitation a token names, if it can still be accepted; else a 4xx that says why."""
    invitation = (
        Invitation.objects.select_related("organization").filter(token_hash=hash_invitation_token(token or "")).first()
    )
    if invitation is None:
        raise ApplicationError("This invitation link is not valid.", code="invitation_invalid", status=404)
    status = invitation.status
    if status == "accepted":
        raise ApplicationError("This invitation has already been used.", code="invitation_used", status=410)
    if status == "revoked":
        raise ApplicationError("This invitation was withdrawn.", code="invitation_revoked", status=410)
    if status == "expired":
        raise ApplicationError(
            f"This invitation expired on {invitation.expires_at:%Y-%m-%d}. Ask for a new one.",
            code="invitation_expired",
            status=410,
        )
    return invitation


@transaction.atomic
def invitation_accept(*, token: str, user) -> Membership:
    invitation = invitation_for_token(token=token)
    if invitation.email.lower() != user.email.lower():
        raise PermissionDenied(
            f"This invitation was sent to {invitation.email}; you are signed in as {user.email}.",
            code="invitation_email_mismatch",
        )
    # Single use even under a race: only one accept can flip accepted_at.
    claimed = Invitation.objects.filter(pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True).update(
        accepted_at=timezone.now(), accepted_by=user, updated_at=timezone.now()
    )
    if not claimed:
        raise ApplicationError("This invitation has already been used.", code="invitation_used", status=410)
    membership, created = Membership.objects.get_or_create(
        organization=invitation.organization, user=user, defaults={"role": invitation.role}
    )
    audit_record(organization=invitation.organization, action=AuditAction.INVITATION_ACCEPTED, actor=user,
                 target=invitation, target_label=invitation.email, data={"role": membership.role, "joined": created})
    return membership


def purge_stale_invitations(*, older_than_days: int = 90) -> int:
    """Delete invitations that ended (expired, used or revoked) long ago."""
    from django.db.models import Q

    cutoff = timezone.now() - timedelta(days=older_than_days)
    deleted, _ = Invitation.objects.filter(
        Q(expires_at__lt=cutoff) | Q(accepted_at__lt=cutoff) | Q(revoked_at__lt=cutoff)
    ).delete()
    return deleted
