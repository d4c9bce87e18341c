from django.contrib import admin
from django.template.defaultfilters import filesizeformat

from .models import Dataset, DatasetVersion


class DatasetVersionInline(admin.TabularInline):
    model = DatasetVersion
    extra = 0
    can_delete = False
    fields = ("number", "original_filename", "row_count", "rejected_count", "label_count", "size_bytes", "created_at")
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "organization", "task", "version_count", "total_size", "created_by", "updated_at")
    list_filter = ("task", "created_at")
    search_fields = ("name", "organization__name", "organization__slug", "created_by__email")
    list_select_related = ("organization", "created_by")
    readonly_fields = ("organization", "public_id", "task", "created_by", "created_at", "updated_at")
    inlines = [DatasetVersionInline]

    @admin.display(description="Versions")
    def version_count(self, obj):
        return obj.versions.count()

    @admin.display(description="Stored")
    def total_size(self, obj):
        return filesizeformat(sum(v.stored_bytes for v in obj.versions.all()))


@admin.register(DatasetVersion)
class DatasetVersionAdmin(admin.ModelAdmin):
    """Versions are immutable: operators look, customers delete."""

    list_display = ("dataset", "number", "organization", "status", "format", "row_count", "rejected_count", "size", "created_at")
    list_filter = ("format", "compressed", "task", "encoding", "created_at")
    search_fields = ("dataset__name", "organization__name", "organization__slug", "sha256", "original_filename")
    list_select_related = ("dataset", "organization")
    exclude = ("report",)
    readonly_fields = [f.name for f in DatasetVersion._meta.fields if f.name != "report"]

    @admin.display(description="Size")
    def size(self, obj):
        return filesizeformat(obj.size_bytes)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
