"""Operators' admin: every model is listed with search and filters, and neither
key hashes nor invitation tokens are ever shown."""
import pytest
from django.urls import reverse

from accounts.models import ApiKey
from tenancy.models import Invitation, Membership, Organization

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(client, make_user):
    client.force_login(make_user(email="ops@lathe.local", is_staff=True, is_superuser=True))
    return client


@pytest.mark.parametrize("model", ["accounts.user", "accounts.apikey", "tenancy.organization", "tenancy.membership", "tenancy.invitation"])
def test_changelists_search_and_filter(operator_client, tenant_a, model):
    tenant_a.key(name="ops-visible")
    app_label, model_name = model.split(".")
    url = reverse(f"admin:{app_label}_{model_name}_changelist")
    assert operator_client.get(url).status_code == 200
    assert operator_client.get(url, {"q": "acme"}).status_code == 200
    page = operator_client.get(url).content.decode()
    assert 'id="changelist-filter"' in page  # filters are offered


def test_api_key_page_never_shows_the_hash(operator_client, tenant_a):
    tenant_a.key(name="secret-holder")
    key = ApiKey.objects.get(name="secret-holder")
    page = operator_client.get(reverse("admin:accounts_apikey_change", args=[key.pk])).content.decode()
    assert key.hashed_key not in page and "hashed_key" not in page
    listing = operator_client.get(reverse("admin:accounts_apikey_changelist"), {"q": "secret"}).content.decode()
    assert "secret-holder" in listing and key.hashed_key not in listing


def test_operator_revokes_keys_and_deactivates_organizations(operator_client, tenant_a):
    tenant_a.key(name="to-revoke")
    key = ApiKey.objects.get(name="to-revoke")
    operator_client.post(reverse("admin:accounts_apikey_changelist"), {"action": "revoke_keys", "_selected_action": [key.pk]})
    key.refresh_from_db()
    assert key.revoked_at is not None
    operator_client.post(reverse("admin:tenancy_organization_changelist"),
                         {"action": "deactivate", "_selected_action": [tenant_a.organization.pk]})
    assert Organization.objects.get(pk=tenant_a.organization.pk).deactivated_at is not None


def test_invitation_admin_hides_the_token_hash(operator_client, tenant_a, client):
    from tenancy.actors import Actor
    from tenancy.services import invitation_create

    invitation, token = invitation_create(organization=tenant_a.organization, actor=Actor.for_membership(tenant_a.owner_membership), email="z@example.com")
    page = operator_client.get(reverse("admin:tenancy_invitation_change", args=[invitation.pk])).content.decode()
    assert invitation.token_hash not in page and token not in page


def test_non_staff_cannot_reach_admin(client, tenant_a):
    client.force_login(tenant_a.owner)
    response = client.get(reverse("admin:accounts_apikey_changelist"))
    assert response.status_code == 302 and "/admin/login" in response["Location"]
    assert Membership.objects.exists() and Invitation.objects.count() == 0
