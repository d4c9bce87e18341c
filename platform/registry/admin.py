from django.contrib import admin

from .models import UploadedModel


@admin.register(UploadedModel)
class UploadedModelAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "organization", "model_type", "num_layers", "parameter_count", "size_bytes", "created_at")
    list_filter = ("model_type",)
    search_fields = ("name", "organization__name", "organization__slug", "sha256")
    list_select_related = ("organization",)
    readonly_fields = [f.name for f in UploadedModel._meta.fields]

    def has_add_permission(self, request):
        return False  # customers upload through the API or the dashboard, where the archive is validated
