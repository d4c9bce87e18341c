"""A locked log-in is recorded in every organization the locked address belongs to."""
from axes.signals import user_locked_out
from django.dispatch import receiver

from .models import AuditAction
from .services import audit_record


@receiver(user_locked_out, dispatch_uid="audit.login_locked")
def record_login_lockout(sender, request=None, username=None, ip_address=None, **kwargs):
    from tenancy.models import Membership

    if not username:
        return
    memberships = Membership.objects.select_related("organization", "user").filter(user__email__iexact=username)
    for membership in memberships:
        audit_record(
            organization=membership.organization,
            action=AuditAction.LOGIN_LOCKED,
            target=membership.user,
            data={"username": username, "ip_address": ip_address},
        )
