"""The audit log: who did what, when, from where, with which request — per
organization, for owners and admins, on the API, the dashboard and (read-only) admin."""
import pytest
from django.core import mail
from django.test import override_settings
from rest_framework.test import APIClient

from audit.models import AuditAction, AuditEvent
from tests.conftest import PASSWORD, bearer_client

pytestmark = pytest.mark.django_db


def actions(organization):
    return list(AuditEvent.objects.filter(organization=organization).order_by("id").values_list("action", flat=True))


def test_security_actions_are_recorded_with_actor_ip_and_request_id(tenant_a, make_user, client,
                                                                   django_capture_on_commit_callbacks):
    org = tenant_a.organization
    owner = APIClient(REMOTE_ADDR="198.51.100.4")
    owner.force_login(tenant_a.owner)
    key = owner.post("/api/v1/api-keys", {"name": "deploy", "scopes": ["read"]}, format="json",
                     HTTP_X_REQUEST_ID="req-create-key-1").json()
    with django_capture_on_commit_callbacks(execute=True):
        invite = owner.post("/api/v1/invitations", {"email": "new@example.com", "role": "admin"}, format="json").json()
    token = mail.outbox[-1].body.split("/invitations/")[1].split()[0]
    newcomer = make_user(email="new@example.com")
    client.force_login(newcomer)
    assert client.post(f"/invitations/{token}").status_code == 302
    from tenancy.models import Membership

    joined = Membership.objects.get(organization=org, user=newcomer)
    assert owner.patch(f"/api/v1/members/{joined.pk}", {"role": "member"}, format="json").status_code == 200
    assert owner.delete(f"/api/v1/api-keys/{key['id']}").status_code == 204
    assert owner.patch("/api/v1/billing/spend-cap", {"spend_cap_usd": "25.00"}, format="json").status_code == 200
    assert owner.delete(f"/api/v1/members/{joined.pk}").status_code == 204
    second = owner.post("/api/v1/invitations", {"email": "other@example.com"}, format="json").json()
    assert owner.delete(f"/api/v1/invitations/{second['id']}").status_code == 204

    assert actions(org) == [
        AuditAction.API_KEY_CREATED, AuditAction.INVITATION_SENT, AuditAction.INVITATION_ACCEPTED,
        AuditAction.MEMBER_ROLE_CHANGED, AuditAction.API_KEY_REVOKED, AuditAction.SPEND_CAP_CHANGED,
        AuditAction.MEMBER_REMOVED, AuditAction.INVITATION_SENT, AuditAction.INVITATION_REVOKED,
    ]
    created = AuditEvent.objects.get(organization=org, action=AuditAction.API_KEY_CREATED)
    assert created.actor_user == tenant_a.owner and created.actor_label == "owner-a@example.com"
    assert created.ip_address == "198.51.100.4" and created.request_id == "req-create-key-1"
    assert created.target_label == f"deploy ({key['prefix']})" and created.data["scopes"] == ["read"]
    assert invite["email"] == "new@example.com"
    accepted = AuditEvent.objects.get(organization=org, action=AuditAction.INVITATION_ACCEPTED)
    assert accepted.actor_user == newcomer and accepted.data["role"] == "admin"
    role = AuditEvent.objects.get(organization=org, action=AuditAction.MEMBER_ROLE_CHANGED)
    assert role.data == {"from": "admin", "to": "member"} and role.target_label == "new@example.com"
    cap = AuditEvent.objects.get(organization=org, action=AuditAction.SPEND_CAP_CHANGED)
    assert cap.data == {"from_cents": None, "to_cents": 2500}


def test_a_removal_lists_the_keys_it_revoked(tenant_a, make_user):
    from tenancy.actors import Actor
    from tenancy.models import Role
    from tenancy.services import membership_remove

    admin = make_user(email="leaver@example.com")
    membership = tenant_a.add_member(admin, Role.ADMIN)
    session = APIClient()
    session.force_login(admin)
    key = session.post("/api/v1/api-keys", {"name": "ci", "scopes": ["read"]}, format="json").json()
    membership_remove(organization=tenant_a.organization, actor=Actor.for_membership(tenant_a.owner_membership),
                      membership_id=membership.pk)
    removed = AuditEvent.objects.get(action=AuditAction.MEMBER_REMOVED)
    assert removed.data["revoked_api_keys"] == [f"ci ({key['prefix']})"]
    assert removed.target_label == "leaver@example.com" and removed.actor_label == "owner-a@example.com"


def test_an_action_by_a_key_names_the_key(tenant_a):
    key = bearer_client(tenant_a.key(name="automation"))
    assert key.post("/api/v1/invitations", {"email": "bot-invited@example.com"}, format="json").status_code == 201
    event = AuditEvent.objects.get(action=AuditAction.INVITATION_SENT)
    assert event.actor_api_key is not None and event.actor_api_key.name == "automation"
    assert event.actor_label.startswith("API key ")


@override_settings(AXES_FAILURE_LIMIT=2)
def test_a_locked_login_is_recorded_in_each_organization_of_the_address(client, tenant_a, make_tenant):
    other = make_tenant("Other", "someone@example.com")
    other.add_member(tenant_a.owner)
    for _ in range(2):
        client.post("/login", {"username": "OWNER-A@example.com", "password": "wrong"}, REMOTE_ADDR="203.0.113.8")
    for organization in (tenant_a.organization, other.organization):
        event = AuditEvent.objects.get(organization=organization, action=AuditAction.LOGIN_LOCKED)
        assert event.data["username"] == "owner-a@example.com" and event.ip_address == "203.0.113.8"


def test_the_api_lists_newest_first_for_admins_only(tenant_a, make_user):
    owner_key = bearer_client(tenant_a.key(name="k1"))
    owner_key.post("/api/v1/invitations", {"email": "x@example.com"}, format="json")
    listed = owner_key.get("/api/v1/audit-log")
    assert listed.status_code == 200
    rows = listed.json()["results"]
    assert [row["action"] for row in rows] == ["invitation.sent", "api_key.created"]
    assert rows[0]["actor"]["api_key_prefix"] and rows[0]["target"]["label"] == "x@example.com"
    assert rows[0]["ip_address"] == "127.0.0.1" and rows[0]["request_id"]
    filtered = owner_key.get("/api/v1/audit-log", {"action": "api_key.created"}).json()["results"]
    assert [row["action"] for row in filtered] == ["api_key.created"]
    bad = owner_key.get("/api/v1/audit-log", {"action": "nope"})
    assert bad.status_code == 400 and "action" in bad.json()["error"]["fields"]

    read_key = bearer_client(tenant_a.key(name="reader", scopes=("read",)))
    assert read_key.get("/api/v1/audit-log").status_code == 403
    member = make_user(email="plain@example.com")
    tenant_a.add_member(member)
    session = APIClient()
    session.force_login(member)
    assert session.get("/api/v1/audit-log").status_code == 403


def test_the_dashboard_page_for_admins_only(client, tenant_a, make_user):
    tenant_a.key(name="visible-key")
    client.force_login(tenant_a.owner)
    page = client.get(f"/o/{tenant_a.organization.slug}/audit-log")
    assert page.status_code == 200
    html = page.content.decode()
    assert "API key created" in html and "visible-key" in html and "Audit log" in html
    member = make_user(email="plain@example.com", password=PASSWORD)
    tenant_a.add_member(member)
    client.force_login(member)
    assert client.get(f"/o/{tenant_a.organization.slug}/audit-log").status_code == 403
    assert "Audit log" not in client.get(f"/o/{tenant_a.organization.slug}/").content.decode()


def test_operators_read_but_never_edit_it_in_admin(client, tenant_a, make_user):
    tenant_a.key(name="k")
    operator = make_user(email="op@example.com", is_staff=True, is_superuser=True)
    client.force_login(operator)
    listing = client.get("/admin/audit/auditevent/")
    assert listing.status_code == 200 and "API key created" in listing.content.decode()
    event = AuditEvent.objects.get()
    assert client.get(f"/admin/audit/auditevent/{event.pk}/delete/").status_code == 403
    assert client.post("/admin/audit/auditevent/add/", {}).status_code == 403
