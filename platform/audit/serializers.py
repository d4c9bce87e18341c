from rest_framework import serializers

from .models import AuditAction, AuditEvent


class AuditActorSerializer(serializers.Serializer):
    label = serializers.CharField(source="actor_label")
    user_email = serializers.EmailField(source="actor_user.email", default=None, allow_null=True)
    api_key_prefix = serializers.CharField(source="actor_api_key.display_prefix", default=None, allow_null=True)


class AuditTargetSerializer(serializers.Serializer):
    type = serializers.CharField(source="target_type")
    id = serializers.CharField(source="target_id")
    label = serializers.CharField(source="target_label")


class AuditEventSerializer(serializers.ModelSerializer):
    action = serializers.ChoiceField(choices=AuditAction.choices)
    action_display = serializers.CharField(source="get_action_display")
    actor = AuditActorSerializer(source="*")
    target = AuditTargetSerializer(source="*")
    ip_address = serializers.IPAddressField(allow_null=True)

    class Meta:
        model = AuditEvent
        fields = ("id", "action", "action_display", "actor", "target", "data", "ip_address", "request_id", "created_at")
        read_only_fields = fields
