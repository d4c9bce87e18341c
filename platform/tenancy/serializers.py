from rest_framework import serializers

from core.serializers import BoundedCharField, RequestSerializer

from .models import ORGANIZATION_NAME_MAX_LENGTH, Invitation, Membership, Organization, Role


class OrganizationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Organization
        fields = ("id", "name", "slug", "created_at")
        read_only_fields = fields


class OrganizationUpdateSerializer(RequestSerializer):
    name = BoundedCharField(max_length=ORGANIZATION_NAME_MAX_LENGTH, trim_whitespace=True,
                            message="Organization names are at most {max_length} characters (this one has {length}).")


class MemberUserSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    email = serializers.EmailField(read_only=True)
    full_name = serializers.CharField(read_only=True)


class MembershipSerializer(serializers.ModelSerializer):
    user = MemberUserSerializer(read_only=True)

    class Meta:
        model = Membership
        fields = ("id", "user", "role", "created_at")
        read_only_fields = fields


class MembershipUpdateSerializer(RequestSerializer):
    role = serializers.ChoiceField(choices=Role.choices)


class InvitationSerializer(serializers.ModelSerializer):
    status = serializers.CharField(read_only=True)
    invited_by = serializers.EmailField(source="invited_by.email", read_only=True, default=None)

    class Meta:
        model = Invitation
        fields = ("id", "email", "role", "status", "invited_by", "created_at", "expires_at", "accepted_at")
        read_only_fields = fields


class InvitationCreateSerializer(RequestSerializer):
    email = serializers.EmailField(max_length=254)
    role = serializers.ChoiceField(choices=Role.choices, default=Role.MEMBER)
