from django.contrib import admin, messages
from django.utils import timezone

from .models import Invitation, Membership, Organization


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ("user",)
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "member_count", "created_at", "deactivated_at")
    list_filter = (("deactivated_at", admin.EmptyFieldListFilter), "created_at")
    search_fields = ("name", "slug", "memberships__user__email")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [MembershipInline]
    actions = ["deactivate", "reactivate"]

    @admin.display(description="Members")
    def member_count(self, obj):
        return obj.memberships.count()

    @admin.action(description="Deactivate selected organizations (API keys and pages stop working)")
    def deactivate(self, request, queryset):
        count = queryset.filter(deactivated_at__isnull=True).update(deactivated_at=timezone.now())
        self.message_user(request, f"Deactivated {count} organization(s).", messages.WARNING)

    @admin.action(description="Reactivate selected organizations")
    def reactivate(self, request, queryset):
        count = queryset.exclude(deactivated_at__isnull=True).update(deactivated_at=None)
        self.message_user(request, f"Reactivated {count} organization(s).", messages.SUCCESS)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "organization", "role", "created_at")
    list_filter = ("role", "created_at")
    search_fields = ("user__email", "organization__name", "organization__slug")
    autocomplete_fields = ("user", "organization")
    list_select_related = ("user", "organization")


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    """The token exists only in the e-mail; its hash is never shown."""

    list_display = ("email", "organization", "role", "status", "invited_by", "created_at", "expires_at", "accepted_at")
    list_filter = ("role", ("accepted_at", admin.EmptyFieldListFilter), ("revoked_at", admin.EmptyFieldListFilter), "created_at")
    search_fields = ("email", "organization__name", "organization__slug", "invited_by__email")
    list_select_related = ("organization", "invited_by")
    fields = ("organization", "email", "role", "invited_by", "created_at", "expires_at", "accepted_at", "accepted_by", "revoked_at")
    readonly_fields = fields
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Withdraw selected invitations")
    def revoke(self, request, queryset):
        count = queryset.filter(accepted_at__isnull=True, revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Withdrew {count} invitation(s).", messages.SUCCESS)
