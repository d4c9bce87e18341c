from rest_framework import serializers

from core.serializers import BoundedCharField, RequestSerializer

from .models import ApiKey, ApiKeyScope
from .services import API_KEY_NAME_MAX_LENGTH


class ApiKeySerializer(serializers.ModelSerializer):
    prefix = serializers.CharField(source="display_prefix", read_only=True)
    status = serializers.CharField(read_only=True)
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=ApiKeyScope.choices), read_only=True)
    created_by = serializers.EmailField(
        source="created_by.email", read_only=True, default=None, allow_null=True,
        help_text="The member the key acts for (it never has more than their current role); null once their account is gone.")
    created_by_key = serializers.CharField(
        source="created_by_key.display_prefix", read_only=True, default=None, allow_null=True,
        help_text="The key that minted this one, when a key created it.")
    revoked_reason = serializers.CharField(read_only=True)

    class Meta:
        model = ApiKey
        fields = ("id", "name", "prefix", "scopes", "status", "created_by", "created_by_key", "created_at", "expires_at",
                  "last_used_at", "revoked_at", "revoked_reason")
        read_only_fields = fields


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(read_only=True, help_text="The full key. Shown once: store it now.")

    class Meta(ApiKeySerializer.Meta):
        fields = ApiKeySerializer.Meta.fields + ("key",)
        read_only_fields = fields


class ApiKeyCreateSerializer(RequestSerializer):
    name = BoundedCharField(max_length=API_KEY_NAME_MAX_LENGTH,
                            message="Key names are at most {max_length} characters (this one has {length}).")
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=ApiKeyScope.choices), min_length=1, max_length=3)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
