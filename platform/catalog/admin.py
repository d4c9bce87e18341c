from django.contrib import admin

from .models import BaseModel


@admin.register(BaseModel)
class BaseModelAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "architecture", "parameter_count", "source_kind", "source", "license", "is_active")
    list_filter = ("architecture", "source_kind", "is_active")
    search_fields = ("name", "slug", "source", "hub_id")
    prepopulated_fields = {"slug": ("name",)}
