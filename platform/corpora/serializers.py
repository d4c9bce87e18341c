from rest_framework import serializers

from core.serializers import BoundedCharField, QuerySerializer

from .models import Dataset, DatasetVersion, Task
from .selectors import PREVIEW_MAX_ROWS


class DatasetVersionSerializer(serializers.ModelSerializer):
    status = serializers.CharField(read_only=True)
    base_model = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    warnings = serializers.SerializerMethodField()

    class Meta:
        model = DatasetVersion
        fields = ("number", "status", "original_filename", "format", "compressed", "encoding", "sha256", "size_bytes",
                  "stored_bytes", "task", "column_mapping", "base_model", "max_length", "row_count", "rejected_count",
                  "train_count", "validation_count", "label_count", "warnings", "created_at")
        read_only_fields = fields

    def get_warnings(self, version) -> list[str]:
        return version.report.get("warnings", [])


class DatasetSerializer(serializers.ModelSerializer):
    latest_version = serializers.SerializerMethodField()

    class Meta:
        model = Dataset
        fields = ("id", "name", "task", "created_at", "updated_at", "latest_version")
        read_only_fields = fields

    def get_latest_version(self, dataset) -> DatasetVersionSerializer(allow_null=True):  # type: ignore[valid-type]
        version = dataset.latest_version
        return DatasetVersionSerializer(version).data if version else None


class DatasetUploadSerializer(serializers.Serializer):
    file = serializers.FileField(allow_empty_file=True, use_url=False, help_text="CSV, TSV or JSONL, optionally .gz")
    name = BoundedCharField(required=False, allow_blank=True, max_length=Dataset._meta.get_field("name").max_length,
                            message="Dataset names are at most {max_length} characters (this one has {length}).")
    task = serializers.ChoiceField(choices=Task.choices, required=False)
    base_model = serializers.CharField(required=False, help_text="Catalog slug; its tokenizer measures lengths")
    max_length = serializers.IntegerField(required=False, help_text="Tokens; rows above it count as truncated")
    validation_fraction = serializers.FloatField(required=False, default=0.1)
    seed = serializers.IntegerField(required=False, default=13)
    text_column = serializers.CharField(required=False)
    label_column = serializers.CharField(required=False)
    text_a_column = serializers.CharField(required=False)
    text_b_column = serializers.CharField(required=False)
    tokens_column = serializers.CharField(required=False)
    tags_column = serializers.CharField(required=False)
    split_column = serializers.CharField(required=False)

    MAPPING_FIELDS = ("text", "label", "text_a", "text_b", "tokens", "tags", "split")

    def service_kwargs(self) -> dict:
        data = dict(self.validated_data)
        mapping = {f: data.pop(f"{f}_column") for f in self.MAPPING_FIELDS if data.get(f"{f}_column")}
        for f in self.MAPPING_FIELDS:
            data.pop(f"{f}_column", None)
        data["uploaded"] = data.pop("file")
        data["column_mapping"] = mapping
        return data


class PreviewQuerySerializer(QuerySerializer):
    split = serializers.ChoiceField(choices=["train", "validation"], default="train")
    limit = serializers.IntegerField(default=20, min_value=1, max_value=PREVIEW_MAX_ROWS)
