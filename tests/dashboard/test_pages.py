import pytest

from accounts.models import ApiKey
from tenancy.models import Organization

pytestmark = pytest.mark.django_db


def test_home_redirects_to_an_organization_or_login(client, tenant_a):
    assert client.get("/")["Location"].startswith("/login")
    client.force_login(tenant_a.owner)
    assert client.get("/")["Location"] == "/o/acme/"


def test_switcher_lists_only_my_organizations(client, tenant_a, tenant_b):
    client.force_login(tenant_a.owner)
    page = client.get("/o/acme/").content.decode()
    assert "Acme" in page and "Beta" not in page


def test_create_second_organization_and_switch(client, tenant_a):
    client.force_login(tenant_a.owner)
    response = client.post("/organizations/new", {"name": "Second Org"})
    assert response.status_code == 302 and response["Location"] == "/o/second-org/"
    page = client.get("/o/second-org/").content.decode()
    assert 'href="/o/acme/"' in page  # switcher offers the first one too
    assert client.get("/")["Location"] == "/o/second-org/"  # current organization remembered


def test_rename_with_a_huge_name_shows_the_limit_inline(client, tenant_a):
    client.force_login(tenant_a.owner)
    response = client.post("/o/acme/settings", {"name": "z" * 10_000})
    assert response.status_code == 400
    assert "at most 100 characters (this one has 10000)" in response.content.decode()
    assert Organization.objects.get(pk=tenant_a.organization.pk).name == "Acme"


def test_member_cannot_rename(client, tenant_a, make_user):
    member = make_user()
    tenant_a.add_member(member)
    client.force_login(member)
    assert client.post("/o/acme/settings", {"name": "Mine now"}).status_code == 403
    assert Organization.objects.get(pk=tenant_a.organization.pk).name == "Acme"


def test_dashboard_key_is_shown_exactly_once_then_revoked(client, tenant_a):
    client.force_login(tenant_a.owner)
    response = client.post("/o/acme/api-keys", {"name": "Deploy", "scopes": ["read", "write"]})
    assert response.status_code == 302
    first = client.get("/o/acme/api-keys").content.decode()
    key = ApiKey.objects.get(name="Deploy")
    assert f"lth_{key.prefix}_" in first and 'id="new-key-value"' in first
    second = client.get("/o/acme/api-keys").content.decode()
    assert 'id="new-key-value"' not in second
    assert client.post(f"/o/acme/api-keys/{key.pk}/revoke").status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_key_form_errors_are_inline(client, tenant_a):
    client.force_login(tenant_a.owner)
    response = client.post("/o/acme/api-keys", {"name": "", "scopes": []})
    assert response.status_code == 400
    body = response.content.decode()
    assert 'data-field="name"' in body and 'data-field="scopes"' in body
    assert not ApiKey.objects.exists()


def test_a_new_key_defaults_to_read_and_write_and_explains_each_scope(client, tenant_a):
    import re

    client.force_login(tenant_a.owner)
    page = client.get("/o/acme/api-keys").content.decode()
    checked = set(re.findall(r'<input type="checkbox" name="scopes" value="(\w+)"[^>]*checked', page))
    assert checked == {"read", "write"}
    assert "upload datasets and models, launch and cancel jobs" in page
    assert "members, invitations, keys, settings" in page
