"""An API key acts with at most its creator's current role and dies when they leave
(the probe: an admin's key kept listing keys, inviting admins and minting
untraceable admin keys after its creator was demoted and then removed)."""
import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from accounts.models import ApiKey
from tenancy.actors import Actor
from tenancy.models import Role
from tenancy.services import membership_change_role, membership_remove
from tests.conftest import bearer_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_and_key(tenant_a, make_user):
    admin = make_user(email="admin-a@example.com")
    membership = tenant_a.add_member(admin, Role.ADMIN)
    client = APIClient()
    client.force_login(admin)
    created = client.post("/api/v1/api-keys", {"name": "admin's key", "scopes": ["admin"]}, format="json")
    client.logout()
    assert created.status_code == 201, created.content
    return membership, created.json()


def owner_actor(tenant):
    return Actor.for_membership(tenant.owner_membership)


def test_a_key_acts_with_its_creators_current_role(tenant_a, admin_and_key):
    membership, created = admin_and_key
    key = bearer_client(created["key"])
    assert key.get("/api/v1/api-keys").status_code == 200
    assert key.post("/api/v1/invitations", {"email": "one@example.com", "role": "admin"}, format="json").status_code == 201

    membership_change_role(organization=tenant_a.organization, actor=owner_actor(tenant_a),
                           membership_id=membership.pk, role=Role.MEMBER)

    # Still a working key (reads and ordinary writes), but no longer an admin's.
    assert key.get("/api/v1/organization").status_code == 200
    assert key.get("/api/v1/api-keys").status_code == 403
    invite = key.post("/api/v1/invitations", {"email": "two@example.com", "role": "admin"}, format="json")
    assert invite.status_code == 403, invite.content
    minted = key.post("/api/v1/api-keys", {"name": "escalate", "scopes": ["admin"]}, format="json")
    assert minted.status_code == 403
    assert not ApiKey.objects.filter(name="escalate").exists()
    # Promoted back, the same key administers again: the role is read on every request.
    membership_change_role(organization=tenant_a.organization, actor=owner_actor(tenant_a),
                           membership_id=membership.pk, role=Role.ADMIN)
    assert key.get("/api/v1/api-keys").status_code == 200


def test_removing_a_member_revokes_their_keys_and_says_so(client, tenant_a, admin_and_key):
    membership, created = admin_and_key
    other = tenant_a.key(name="owner's key")  # someone else's key survives
    client.force_login(tenant_a.owner)
    confirmation = client.get(f"/o/{tenant_a.organization.slug}/members/{membership.pk}/remove")
    assert confirmation.status_code == 200
    page = confirmation.content.decode()
    assert "1 API key created by admin-a@example.com will be revoked" in page
    assert "admin&#x27;s key" in page and created["prefix"] in page

    removed = client.post(f"/o/{tenant_a.organization.slug}/members/{membership.pk}/remove", follow=True)
    assert "Revoked 1 API key they created: admin&#x27;s key" in removed.content.decode()

    row = ApiKey.objects.get(pk=created["id"])
    assert row.revoked_at is not None and row.revoked_by == tenant_a.owner
    assert row.revoked_reason == "admin-a@example.com was removed from the organization"
    refused = bearer_client(created["key"]).get("/api/v1/organization")
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]
    assert bearer_client(other).get("/api/v1/organization").status_code == 200


def test_membership_remove_returns_the_revoked_keys(tenant_a, admin_and_key):
    membership, created = admin_and_key
    revoked = membership_remove(organization=tenant_a.organization, actor=owner_actor(tenant_a), membership_id=membership.pk)
    assert [key.pk for key in revoked] == [created["id"]]


def test_a_key_whose_creator_is_gone_is_refused_even_if_not_revoked(tenant_a, admin_and_key):
    """Keys from before revocation-on-removal, or a creator removed by an operator in the admin."""
    membership, created = admin_and_key
    membership.delete()  # bypasses the service, like an operator would
    refused = bearer_client(created["key"]).get("/api/v1/organization")
    assert refused.status_code == 401
    assert "creator is no longer a member" in refused.json()["error"]["message"]

    from audit.models import AuditAction, AuditEvent

    event = AuditEvent.objects.get(organization=tenant_a.organization, action=AuditAction.API_KEY_REFUSED_CREATOR_LEFT)
    assert event.target_id == str(created["id"])
    # A retrying client does not flood the log.
    bearer_client(created["key"]).get("/api/v1/organization")
    assert AuditEvent.objects.filter(action=AuditAction.API_KEY_REFUSED_CREATOR_LEFT).count() == 1


def test_a_key_minted_by_a_key_records_both(tenant_a, admin_and_key):
    _membership, created = admin_and_key
    minted = bearer_client(created["key"]).post("/api/v1/api-keys", {"name": "child", "scopes": ["read"]}, format="json")
    assert minted.status_code == 201
    body = minted.json()
    assert body["created_by"] == "admin-a@example.com"
    assert body["created_by_key"] == created["prefix"]
    child = ApiKey.objects.get(pk=body["id"])
    assert child.created_by.email == "admin-a@example.com" and child.created_by_key_id == created["id"]


def test_an_owners_admin_key_administers_but_does_not_own(tenant_a, make_user):
    key = bearer_client(tenant_a.key(scopes=("admin",)))
    member = tenant_a.add_member(make_user(email="m@example.com"))
    promote = key.patch(f"/api/v1/members/{member.pk}", {"role": "owner"}, format="json")
    assert promote.status_code == 403


@override_settings(LATHE_MAX_LIVE_API_KEYS=2)
def test_live_api_keys_per_organization_are_capped(tenant_a):
    admin = bearer_client(tenant_a.key(name="first"))
    assert admin.post("/api/v1/api-keys", {"name": "second", "scopes": ["read"]}, format="json").status_code == 201
    third = admin.post("/api/v1/api-keys", {"name": "third", "scopes": ["read"]}, format="json")
    assert third.status_code == 409
    assert third.json()["error"]["code"] == "api_key_limit" and "most allowed is 2" in third.json()["error"]["message"]
    assert not ApiKey.objects.filter(name="third").exists()
    second = ApiKey.objects.get(name="second")
    assert admin.delete(f"/api/v1/api-keys/{second.pk}").status_code == 204
    assert admin.post("/api/v1/api-keys", {"name": "third", "scopes": ["read"]}, format="json").status_code == 201
