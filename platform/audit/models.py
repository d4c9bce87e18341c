"""The audit log: security-relevant actions per organization, written by the
system only (never edited, never deleted with the actor)."""
from django.db import models


class AuditAction(models.TextChoices):
    API_KEY_CREATED = "api_key.created", "API key created"
    API_KEY_REVOKED = "api_key.revoked", "API key revoked"
    API_KEY_REFUSED_CREATOR_LEFT = "api_key.refused_creator_left", "API key used after its creator left"
    MEMBER_ROLE_CHANGED = "member.role_changed", "Member's role changed"
    MEMBER_REMOVED = "member.removed", "Member removed"
    MEMBER_LEFT = "member.left", "Member left"
    INVITATION_SENT = "invitation.sent", "Invitation sent"
    INVITATION_REVOKED = "invitation.revoked", "Invitation withdrawn"
    INVITATION_ACCEPTED = "invitation.accepted", "Invitation accepted"
    PLAN_CHANGED = "billing.plan_changed", "Plan changed"
    SPEND_CAP_CHANGED = "billing.spend_cap_changed", "Spend cap changed"
    LOGIN_LOCKED = "login.locked", "Log-in locked after failed attempts"


class AuditEvent(models.Model):
    organization = models.ForeignKey("tenancy.Organization", on_delete=models.CASCADE, related_name="audit_events")
    action = models.CharField(max_length=64, choices=AuditAction.choices, db_index=True)
    # Who acted. The labels are copies, so the record still reads right after the
    # person or key is gone.
    actor_user = models.ForeignKey("accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    actor_api_key = models.ForeignKey("accounts.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    actor_label = models.CharField(max_length=200)
    target_type = models.CharField(max_length=40, blank=True)
    target_id = models.CharField(max_length=40, blank=True)
    target_label = models.CharField(max_length=200, blank=True)
    data = models.JSONField(default=dict, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [models.Index(fields=["organization", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action} by {self.actor_label}"
