from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import keys
from accounts.models import ApiKey

pytestmark = pytest.mark.django_db


def test_created_key_is_shown_once_and_stored_as_prefix_plus_hash(tenant_a, api_for):
    admin = api_for(tenant_a.key(scopes=["admin"]))
    response = admin.post("/api/v1/api-keys", {"name": "CI", "scopes": ["read"]}, format="json")
    assert response.status_code == 201
    full_key = response.json()["key"]
    assert full_key.startswith("lth_")
    row = ApiKey.objects.get(pk=response.json()["id"])
    assert full_key not in (row.prefix, row.hashed_key)
    assert row.hashed_key == keys.hash_key(full_key)
    assert full_key.split("_")[1] == row.prefix
    # Never again: neither the detail nor the list returns the key.
    detail = admin.get(f"/api/v1/api-keys/{row.pk}").json()
    assert "key" not in detail and full_key not in str(admin.get("/api/v1/api-keys").json())
    assert detail["scopes"] == ["read"] and detail["status"] == "active"
    # And it works.
    assert api_for(full_key).get("/api/v1/organization").json()["slug"] == tenant_a.organization.slug


def test_write_and_admin_scopes_imply_read(tenant_a, api_for):
    admin = api_for(tenant_a.key(scopes=["admin"]))
    body = admin.post("/api/v1/api-keys", {"name": "w", "scopes": ["write"]}, format="json").json()
    assert body["scopes"] == ["read", "write"]


def unauthorized_message(key_header: str) -> str:
    client = APIClient()
    response = client.get("/api/v1/organization", HTTP_AUTHORIZATION=key_header)
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"].startswith("Bearer")
    body = response.json()["error"]
    assert body["code"] == "authentication_failed"
    return body["message"]


def test_malformed_header(tenant_a):
    assert "expected 'Authorization: Bearer <API key>'" in unauthorized_message("Token abc")
    assert "expected 'Authorization: Bearer <API key>'" in unauthorized_message("Bearer")
    assert "expected 'Authorization: Bearer <API key>'" in unauthorized_message("Bearer a b")


def test_wrong_prefix():
    assert "keys start with 'lth_'" in unauthorized_message("Bearer sk_live_1234567890")


def test_malformed_key():
    assert "Malformed API key" in unauthorized_message("Bearer lth_short_key")


def test_unknown_key(tenant_a):
    real = tenant_a.key()
    forged = real[:-4] + ("aaaa" if not real.endswith("aaaa") else "bbbb")
    assert unauthorized_message(f"Bearer {forged}") == "Unknown API key."
    assert unauthorized_message("Bearer " + keys.generate_key().full_key) == "Unknown API key."


def test_revoked_key_answers_401_and_revocation_changes_nothing_else(tenant_a, api_for):
    victim = tenant_a.key(name="victim")
    admin = api_for(tenant_a.key(scopes=["admin"]))
    row = ApiKey.objects.get(name="victim")
    assert admin.delete(f"/api/v1/api-keys/{row.pk}").status_code == 204
    assert "was revoked on" in unauthorized_message(f"Bearer {victim}")
    row.refresh_from_db()
    assert row.revoked_at is not None
    listed = {k["name"]: k["status"] for k in admin.get("/api/v1/api-keys").json()["results"]}
    assert listed["victim"] == "revoked"


def test_expired_key(tenant_a):
    key = tenant_a.key(expires_at=timezone.now() + timedelta(seconds=30))
    ApiKey.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
    assert "expired on" in unauthorized_message(f"Bearer {key}")


def test_expiry_in_the_past_is_refused_at_creation(tenant_a, api_for):
    admin = api_for(tenant_a.key(scopes=["admin"]))
    before = ApiKey.objects.count()
    response = admin.post("/api/v1/api-keys", {"name": "old", "scopes": ["read"], "expires_at": "2001-01-01T00:00:00Z"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"expires_at": ["The expiry must be in the future."]}
    assert ApiKey.objects.count() == before


def test_scopes_are_enforced(tenant_a, api_for):
    reader = api_for(tenant_a.key(scopes=["read"]))
    assert reader.get("/api/v1/members").status_code == 200
    response = reader.patch("/api/v1/organization", {"name": "Renamed"}, format="json")
    assert response.status_code == 403
    assert "lacks the 'write', 'admin' scope" in response.json()["error"]["message"]
    writer = api_for(tenant_a.key(scopes=["write"]))
    response = writer.post("/api/v1/api-keys", {"name": "x", "scopes": ["read"]}, format="json")
    assert response.status_code == 403 and "'admin'" in response.json()["error"]["message"]
    tenant_a.organization.refresh_from_db()
    assert tenant_a.organization.name == "Acme"


def test_unknown_scope_is_named(tenant_a, api_for):
    admin = api_for(tenant_a.key(scopes=["admin"]))
    response = admin.post("/api/v1/api-keys", {"name": "x", "scopes": ["root"]}, format="json")
    assert response.status_code == 400
    assert "scopes" in response.json()["error"]["fields"]


def test_last_used_is_recorded_but_throttled(tenant_a, api_for):
    key = tenant_a.key(name="used")
    client = api_for(key)
    assert ApiKey.objects.get(name="used").last_used_at is None
    client.get("/api/v1/organization")
    first = ApiKey.objects.get(name="used").last_used_at
    assert first is not None
    client.get("/api/v1/organization")
    assert ApiKey.objects.get(name="used").last_used_at == first  # within a minute: no write
    ApiKey.objects.filter(name="used").update(last_used_at=first - timedelta(minutes=5))
    client.get("/api/v1/organization")
    assert ApiKey.objects.get(name="used").last_used_at > first - timedelta(minutes=5)


def test_deactivated_organization_key_is_refused(tenant_a):
    key = tenant_a.key()
    tenant_a.organization.deactivated_at = timezone.now()
    tenant_a.organization.save()
    assert "deactivated" in unauthorized_message(f"Bearer {key}")


def test_members_cannot_create_keys_from_the_dashboard(client, tenant_a, make_user):
    member = make_user(email="m@example.com")
    tenant_a.add_member(member)
    client.force_login(member)
    response = client.post(f"/o/{tenant_a.organization.slug}/api-keys", {"name": "mine", "scopes": ["read"]})
    assert response.status_code == 403
    assert not ApiKey.objects.filter(name="mine").exists()
