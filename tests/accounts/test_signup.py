import pytest
from django.urls import reverse

from accounts.models import User
from tenancy.models import Membership, Organization, Role

pytestmark = pytest.mark.django_db

GOOD = {"email": "ada@example.com", "full_name": "Ada Lovelace", "password": "analytical-engine-1843", "organization_name": "Analytical"}


def counts():
    return User.objects.count(), Organization.objects.count(), Membership.objects.count()


def test_signup_creates_user_first_organization_and_logs_in(client):
    response = client.post(reverse("signup"), GOOD)
    organization = Organization.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("dashboard:overview", args=[organization.slug])
    user = User.objects.get(email="ada@example.com")
    assert organization.name == "Analytical"
    assert Membership.objects.get(user=user, organization=organization).role == Role.OWNER
    assert client.get(response["Location"]).status_code == 200  # logged in


def test_signup_email_is_case_insensitive_and_duplicate_is_refused(client, make_user):
    make_user(email="ada@example.com")
    before = counts()
    response = client.post(reverse("signup"), {**GOOD, "email": "ADA@Example.com"})
    assert response.status_code == 409
    assert "An account with this e-mail already exists." in response.content.decode()
    assert counts() == before


@pytest.mark.parametrize("password,fragment", [
    ("short", "too short"),
    ("password123", "too common"),
    ("12345678901", "entirely numeric"),
])
def test_weak_password_is_refused_inline_and_nothing_is_written(client, password, fragment):
    before = counts()
    response = client.post(reverse("signup"), {**GOOD, "password": password})
    assert response.status_code == 400
    body = response.content.decode()
    assert fragment in body
    assert 'data-field="password"' in body  # shown next to the field
    assert counts() == before


def test_ten_thousand_character_organization_name_is_refused(client):
    before = counts()
    response = client.post(reverse("signup"), {**GOOD, "organization_name": "x" * 10_000})
    assert response.status_code == 400
    assert "at most 100 characters (this one has 10000)" in response.content.decode()
    assert counts() == before  # the user row was rolled back with the organization


def test_default_organization_name_when_none_given(client):
    client.post(reverse("signup"), {**GOOD, "organization_name": ""})
    assert Organization.objects.get().name == "Ada Lovelace's organization"
