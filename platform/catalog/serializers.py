from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.serializers import QuerySerializer

from .models import JOB_KINDS, BaseModel, ChatTemplateSource, TaskFamily

ALL_JOB_KINDS = sorted({kind for kinds in JOB_KINDS.values() for kind in kinds})


class BaseModelSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="slug", read_only=True,
                               help_text="What a dataset upload or a job names as base_model")
    task_family = serializers.ChoiceField(choices=TaskFamily.choices, read_only=True,
                                          help_text="classification (encoders) or chat (causal language models)")
    context_length = serializers.IntegerField(read_only=True, allow_null=True,
                                              help_text="Most tokens the model takes in one sequence")
    parameter_count = serializers.IntegerField(read_only=True, allow_null=True)
    license = serializers.CharField(read_only=True)
    hub_id = serializers.SerializerMethodField(help_text="The model's public Hugging Face id")
    notes = serializers.CharField(read_only=True, help_text="What to know about these weights")
    chat_template = serializers.SerializerMethodField()
    job_kinds = serializers.SerializerMethodField()
    supported_tasks = serializers.ListField(child=serializers.CharField(), read_only=True,
                                            help_text="Dataset tasks the model trains on")
    default_max_length = serializers.IntegerField(read_only=True, help_text="Tokens per sequence when a job says auto")
    is_default = serializers.BooleanField(read_only=True,
                                          help_text="Measures datasets of its family at upload (one per family)")

    class Meta:
        model = BaseModel
        fields = ("id", "name", "task_family", "architecture", "context_length", "parameter_count", "license", "hub_id",
                  "notes", "chat_template", "job_kinds", "supported_tasks", "default_max_length", "is_default")
        read_only_fields = fields

    def get_hub_id(self, model) -> str:
        return model.public_id()

    @extend_schema_field(serializers.ChoiceField(
        choices=[c for c in ChatTemplateSource.values if c], allow_null=True,
        help_text="Chat models: 'model' (the tokenizer's own template) or 'default' (Lathe's ChatML); null otherwise"))
    def get_chat_template(self, model):
        return model.chat_template_source or None

    @extend_schema_field(serializers.ListField(child=serializers.ChoiceField(choices=ALL_JOB_KINDS),
                                               help_text="Job kinds that start from this model"))
    def get_job_kinds(self, model):
        return list(model.job_kinds)


class BaseModelQuerySerializer(QuerySerializer):
    task_family = serializers.ChoiceField(choices=TaskFamily.choices, required=False,
                                          help_text="Only models of this family")
