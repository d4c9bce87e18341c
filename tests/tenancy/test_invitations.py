import re
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from tenancy.models import Invitation, Membership, Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def invite(client, django_capture_on_commit_callbacks):
    """Invite through the API and return (body, accept link from the e-mail).
    The e-mail goes out on commit, which the test transaction never reaches."""

    def send(client, tenant, email="new@example.com", role="member"):
        return _invite(client, tenant, email, role, django_capture_on_commit_callbacks)

    return send


def _invite(client, tenant, email, role, capture):
    client.force_login(tenant.owner)
    with capture(execute=True):
        response = client.post("/api/v1/invitations", {"email": email, "role": role}, content_type="application/json")
    assert response.status_code == 201, response.content
    client.logout()
    link = re.search(r"https?://[^/]+(/invitations/\S+)", mail.outbox[-1].body).group(1)
    return response.json(), link


def test_invitation_email_and_accept_by_a_new_user(client, tenant_a, invite):
    body, link = invite(client, tenant_a, role="admin")
    assert body["status"] == "pending" and body["email"] == "new@example.com"
    assert mail.outbox[-1].to == ["new@example.com"]
    # Anonymous visitor: sees the invitation, signs up, and lands in the organization.
    page = client.get(link)
    assert page.status_code == 200 and "Join Acme" in page.content.decode()
    signup = client.post("/signup", {"email": "new@example.com", "password": "a-good-long-passphrase", "organization_name": ""})
    assert signup.status_code == 302 and signup["Location"] == link
    accepted = client.post(link)
    assert accepted.status_code == 302
    membership = Membership.objects.get(user__email="new@example.com", organization=tenant_a.organization)
    assert membership.role == Role.ADMIN
    assert Invitation.objects.get(pk=body["id"]).status == "accepted"


def test_token_is_single_use(client, tenant_a, make_user, invite):
    _body, link = invite(client, tenant_a)
    user = make_user(email="new@example.com")
    client.force_login(user)
    assert client.post(link).status_code == 302
    again = client.post(link)
    assert again.status_code == 410
    assert "already been used" in again.content.decode()
    assert Membership.objects.filter(user=user).count() == 1


def test_expired_invitation_is_refused_and_changes_nothing(client, tenant_a, make_user, invite):
    body, link = invite(client, tenant_a)
    Invitation.objects.filter(pk=body["id"]).update(expires_at=timezone.now() - timedelta(minutes=1))
    user = make_user(email="new@example.com")
    client.force_login(user)
    response = client.post(link)
    assert response.status_code == 410
    assert "expired" in response.content.decode()
    assert not Membership.objects.filter(user=user).exists()


def test_invitation_for_someone_else_is_refused(client, tenant_a, make_user, invite):
    _body, link = invite(client, tenant_a)
    intruder = make_user(email="intruder@example.com")
    client.force_login(intruder)
    response = client.post(link)
    assert response.status_code == 403
    assert "sent to new@example.com" in response.content.decode()
    assert not Membership.objects.filter(user=intruder).exists()


def test_unknown_token(client, make_user):
    client.force_login(make_user())
    assert client.get("/invitations/not-a-real-token").status_code == 404


def test_reinviting_replaces_the_open_invitation(client, tenant_a, invite):
    first, first_link = invite(client, tenant_a)
    second, second_link = invite(client, tenant_a)
    assert Invitation.objects.get(pk=first["id"]).status == "revoked"
    assert client.get(first_link).status_code == 410
    assert client.get(second_link).status_code == 200


def test_inviting_an_existing_member_is_a_conflict(client, tenant_a):
    client.force_login(tenant_a.owner)
    response = client.post("/api/v1/invitations", {"email": "OWNER-A@example.com"}, content_type="application/json")
    assert response.status_code == 409
    assert response.json()["error"]["fields"] == {"email": ["Already a member."]}
    assert not Invitation.objects.exists() and not mail.outbox


def test_invalid_email_names_the_field(client, tenant_a):
    client.force_login(tenant_a.owner)
    response = client.post("/api/v1/invitations", {"email": "not-an-address"}, content_type="application/json")
    assert response.status_code == 400
    assert "email" in response.json()["error"]["fields"]


def test_revoke_through_api_and_link_stops_working(client, tenant_a, invite):
    body, link = invite(client, tenant_a)
    client.force_login(tenant_a.owner)
    assert client.delete(f"/api/v1/invitations/{body['id']}").status_code == 204
    assert client.delete(f"/api/v1/invitations/{body['id']}").status_code == 409
    client.logout()
    assert client.get(link).status_code == 410


def test_dashboard_invite_form_shows_inline_errors(client, tenant_a):
    client.force_login(tenant_a.owner)
    response = client.post(f"/o/{tenant_a.organization.slug}/members", {"email": "bad", "role": "member"})
    assert response.status_code == 400
    assert 'data-field="email"' in response.content.decode()
    ok = client.post(f"/o/{tenant_a.organization.slug}/members", {"email": "good@example.com", "role": "member"})
    assert ok.status_code == 302 and Invitation.objects.filter(email="good@example.com").exists()


def test_members_cannot_invite(client, tenant_a, make_user):
    member = make_user()
    tenant_a.add_member(member)
    client.force_login(member)
    response = client.post("/api/v1/invitations", {"email": "x@example.com"}, content_type="application/json")
    assert response.status_code == 403
    assert not Invitation.objects.exists()
