"""Reads, always scoped by organization first (tenant resolved once per request)."""
from __future__ import annotations

from django.db.models import QuerySet
from django.utils import timezone

from core.errors import NotFound

from .models import Invitation, Membership, Organization


def organization_list_for_user(*, user) -> QuerySet[Organization]:
    return Organization.objects.filter(memberships__user=user, deactivated_at__isnull=True).order_by("name", "id")


def membership_for_user(*, user, organization_slug: str) -> Membership:
    """The user's membership in the organization with this slug. A missing
    organization and one the user does not belong to are the same 404."""
    membership = (
        Membership.objects.select_related("organization", "user")
        .filter(user=user, organization__slug=organization_slug, organization__deactivated_at__isnull=True)
        .first()
    )
    if membership is None:
        raise NotFound("Organization not found.")
    return membership


def membership_list(*, organization: Organization) -> QuerySet[Membership]:
    return Membership.objects.filter(organization=organization).select_related("user").order_by("created_at", "id")


def membership_get(*, organization: Organization, membership_id) -> Membership:
    membership = membership_list(organization=organization).filter(pk=membership_id).first()
    if membership is None:
        raise NotFound("Member not found.")
    return membership


def invitation_list(*, organization: Organization, pending_only: bool = False) -> QuerySet[Invitation]:
    qs = Invitation.objects.filter(organization=organization).select_related("invited_by").order_by("-created_at", "-id")
    if pending_only:
        qs = qs.filter(accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now())
    return qs


def invitation_get(*, organization: Organization, invitation_id) -> Invitation:
    invitation = invitation_list(organization=organization).filter(pk=invitation_id).first()
    if invitation is None:
        raise NotFound("Invitation not found.")
    return invitation
