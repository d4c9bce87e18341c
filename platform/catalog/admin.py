from django import forms
from django.contrib import admin

from .models import BaseModel, ChatTemplateSource, TaskFamily, WeightsSource

CHAT_TASKS = ["chat"]


class BaseModelForm(forms.ModelForm):
    """A chat model's folder is checked on save (catalog/validation.py) and its facts are read from it:
    architecture, context length (unless given), parameter count, where the chat template comes from."""

    use_default_chat_template = forms.BooleanField(
        required=False, label="Use Lathe's default chat template",
        help_text="For a causal LM whose tokenizer has no chat template: ChatML (docs/datasets.md). A template in "
                  "the folder always wins.")

    class Meta:
        model = BaseModel
        fields = "__all__"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["architecture"].required = False
        self.fields["supported_tasks"].required = False  # chat models: set to ["chat"]; empty: every classification task
        self.fields["architecture"].help_text = "e.g. bert; read from config.json for chat models"
        self.fields["source"].help_text = (
            "Package module, a folder on this machine, a storage prefix, or a hub id. A chat model: a folder or a "
            "storage prefix in save_pretrained layout (config.json, *.safetensors, the tokenizer with its chat template).")
        self.fields["use_default_chat_template"].initial = self.instance.chat_template_source == ChatTemplateSource.DEFAULT

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        family = cleaned.get("task_family")
        if cleaned.get("is_default") and BaseModel.objects.filter(task_family=family, is_default=True) \
                .exclude(pk=self.instance.pk).exists():
            other = BaseModel.objects.get(task_family=family, is_default=True)
            self.add_error("is_default", f"{other.name} is already the default {family} model; untick it there first.")
        if family == TaskFamily.CHAT:
            self._check_causal_lm(cleaned)
        else:
            if not cleaned.get("architecture"):
                self.add_error("architecture", "Name the architecture (the config's model_type, e.g. bert).")
            self.instance.chat_template_source = ChatTemplateSource.NONE
        return cleaned

    def _check_causal_lm(self, cleaned):
        from .storage_cache import StorageModelError, materialize
        from .validation import ModelFolderError, inspect_causal_lm

        kind, source = cleaned.get("source_kind"), (cleaned.get("source") or "").strip()
        if kind not in (WeightsSource.PATH, WeightsSource.STORAGE):
            self.add_error("source_kind", "A chat model must be on this installation: a folder (path) or a storage "
                                          "prefix, so its files can be checked and loaded offline.")
            return
        try:
            folder = materialize(prefix=source) if kind == WeightsSource.STORAGE else source
            facts = inspect_causal_lm(folder, allow_default_template=cleaned.get("use_default_chat_template", False))
        except StorageModelError as exc:
            self.add_error("source", str(exc))
            return
        except ModelFolderError as exc:
            self.add_error(exc.field if exc.field in self.fields else "source", exc.message)
            return
        if cleaned.get("context_length") and facts.context_length and cleaned["context_length"] > facts.context_length:
            self.add_error("context_length", f"The model's config allows at most {facts.context_length} tokens.")
            return
        cleaned["architecture"] = facts.model_type or facts.architecture
        cleaned["context_length"] = cleaned.get("context_length") or facts.context_length
        cleaned["parameter_count"] = facts.parameter_count
        cleaned["supported_tasks"] = CHAT_TASKS
        self.instance.chat_template_source = facts.chat_template_source


@admin.register(BaseModel)
class BaseModelAdmin(admin.ModelAdmin):
    form = BaseModelForm
    list_display = ("name", "slug", "task_family", "architecture", "parameter_count", "context_length", "source_kind",
                    "license", "is_default", "is_active")
    list_filter = ("task_family", "architecture", "source_kind", "is_active")
    search_fields = ("name", "slug", "source", "hub_id")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("chat_template_source",)
    fieldsets = (
        (None, {"fields": ("name", "slug", "task_family", "is_active", "is_default")}),
        ("Weights", {"fields": ("source_kind", "source", "hub_id", "license", "notes")}),
        ("Facts (read from the folder for chat models)", {"fields": (
            "architecture", "parameter_count", "context_length", "chat_template_source", "use_default_chat_template")}),
        ("Defaults", {"fields": ("supported_tasks", "default_max_length", "default_hyperparameters")}),
    )
