from rest_framework import serializers

from core.serializers import BoundedCharField

from .models import UploadedModel


class UploadedModelSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="email", read_only=True)

    class Meta:
        model = UploadedModel
        fields = ("id", "name", "model_type", "architecture", "task", "labels", "num_layers", "hidden_size", "parameter_count",
                  "max_length", "size_bytes", "sha256", "created_by", "created_at")
        read_only_fields = fields


class ModelUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A zip of the folder save_pretrained wrote: config.json (a *ForSequenceClassification "
                                           "with id2label), *.safetensors weights, tokenizer files. Pickle weights are refused.")
    name = BoundedCharField(required=False, allow_blank=True, default="", max_length=UploadedModel._meta.get_field("name").max_length)
