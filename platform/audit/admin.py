from django.contrib import admin

from core.admin import ReadOnlyAdmin

from .models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "organization", "action", "actor_label", "target_label", "ip_address", "request_id")
    list_filter = ("action",)
    search_fields = ("organization__name", "organization__slug", "actor_label", "target_label", "ip_address", "request_id")
    list_select_related = ("organization",)
    date_hierarchy = "created_at"
