from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.serializers import BoundedCharField, QuerySerializer

from .models import Dataset, DatasetVersion, Task
from .parsing import CONFIDENCE_LEVELS
from .selectors import PREVIEW_MAX_ROWS

CONFIDENCE_HELP = ("How sure the encoding is: certain (a byte-order mark, or named in the upload), high (valid "
                   "UTF-8), medium or low (guessed from the text: check the preview, or name the encoding).")


class DatasetVersionSerializer(serializers.ModelSerializer):
    status = serializers.CharField(read_only=True)
    base_model = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    encoding_confidence = serializers.SerializerMethodField()
    warnings = serializers.SerializerMethodField()

    class Meta:
        model = DatasetVersion
        fields = ("number", "status", "original_filename", "format", "compressed", "encoding", "encoding_confidence",
                  "sha256", "size_bytes", "stored_bytes", "task", "column_mapping", "base_model", "max_length",
                  "row_count", "rejected_count", "train_count", "validation_count", "label_count", "warnings",
                  "created_at")
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=CONFIDENCE_LEVELS, allow_null=True, help_text=CONFIDENCE_HELP))
    def get_encoding_confidence(self, version):
        return version.report.get("encoding_detection", {}).get("confidence")  # None: uploaded before it was recorded

    def get_warnings(self, version) -> list[str]:
        return version.report.get("warnings", [])


class EncodingDetectionSerializer(serializers.Serializer):
    encoding = serializers.CharField(help_text="The Python codec the file was read with")
    name = serializers.CharField()
    source = serializers.ChoiceField(choices=["bom", "given", "detected"])
    confidence = serializers.ChoiceField(choices=CONFIDENCE_LEVELS, help_text=CONFIDENCE_HELP)
    reason = serializers.CharField()
    needs_confirmation = serializers.BooleanField()


class DatasetCheckSerializer(serializers.Serializer):
    """A dry run's answer (nothing is kept)."""

    kept = serializers.SerializerMethodField()
    original_filename = serializers.CharField()
    encoding = serializers.CharField()
    encoding_confidence = serializers.ChoiceField(choices=CONFIDENCE_LEVELS, help_text=CONFIDENCE_HELP)
    encoding_detection = EncodingDetectionSerializer()
    task = serializers.CharField(source="report.task")
    column_mapping = serializers.DictField(source="report.column_mapping", child=serializers.CharField())
    rows = serializers.DictField(source="report.rows", child=serializers.IntegerField())
    warnings = serializers.ListField(source="report.warnings", child=serializers.CharField())
    preview = serializers.ListField(child=serializers.DictField(),
                                    help_text="The first accepted rows (up to 20), in file order, as they would be stored")
    report = serializers.DictField(help_text="The full preflight report, as a kept version's /report returns it")

    def get_kept(self, check) -> bool:
        return False


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
    task = serializers.ChoiceField(choices=Task.choices, required=False,
                                   help_text="Blank: detected (chat: JSONL with messages, or prompt and completion)")
    base_model = serializers.CharField(required=False, help_text=(
        "Catalog slug; its tokenizer measures lengths. A chat dataset is measured with this model when it is a chat "
        "model, else with the catalog's default chat model (GET /base-models)"))
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
    encoding = serializers.CharField(required=False, allow_blank=True, max_length=64,
                                     help_text="The file's encoding as a Python codec name (utf-8, cp1252, latin-1, "
                                               "utf-16, …); blank = detect")
    dry_run = serializers.BooleanField(required=False, default=False,
                                       help_text="Check only: answer 200 with the report and the first rows as they "
                                                 "would be stored; nothing is kept")

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
