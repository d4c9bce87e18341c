import re
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.core import mail
from django.test import override_settings
from django.urls import reverse

from accounts.services import purge_stale_login_attempts
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def login(client, email, password):
    return client.post(reverse("login"), {"username": email, "password": password}, REMOTE_ADDR="10.0.0.7")


def test_login_with_email_any_case_and_logout(client, tenant_a):
    response = login(client, "OWNER-A@example.com", PASSWORD)
    assert response.status_code == 302
    assert client.get(reverse("dashboard:home")).status_code == 302
    assert client.get(f"/o/{tenant_a.organization.slug}/").status_code == 200
    client.post(reverse("logout"))
    assert client.get(f"/o/{tenant_a.organization.slug}/").status_code == 302  # back to login


def test_wrong_password_shows_an_inline_error(client, tenant_a):
    response = login(client, "owner-a@example.com", "nope")
    assert response.status_code == 400
    assert "Please enter a correct e-mail address and password" in response.content.decode()


@override_settings(AXES_FAILURE_LIMIT=3)
def test_brute_force_locks_out_and_the_lock_expires(client, tenant_a):
    for _ in range(3):
        login(client, "owner-a@example.com", "wrong-guess")
    locked = login(client, "owner-a@example.com", PASSWORD)  # even the right password
    assert locked.status_code == 429
    assert "Too many failed log-ins" in locked.content.decode()
    # Another address is not locked out by this one.
    other = client.post(reverse("login"), {"username": "owner-a@example.com", "password": PASSWORD}, REMOTE_ADDR="10.0.0.8")
    assert other.status_code == 302
    client.post(reverse("logout"))
    # The cool-off passes (axes compares attempt times against AXES_COOLOFF_TIME).
    from django.conf import settings

    AccessAttempt.objects.update(attempt_time=AccessAttempt.objects.first().attempt_time - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))
    assert login(client, "owner-a@example.com", PASSWORD).status_code == 302


def test_stale_attempts_are_purged(client, tenant_a):
    login(client, "owner-a@example.com", "wrong")
    assert AccessAttempt.objects.count() == 1
    assert purge_stale_login_attempts() == 0
    AccessAttempt.objects.update(attempt_time=AccessAttempt.objects.first().attempt_time - timedelta(days=1))
    assert purge_stale_login_attempts() == 1


def test_password_reset_round_trip_is_single_use(client, tenant_a):
    response = client.post(reverse("password_reset"), {"email": "owner-a@example.com"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    link = re.search(r"https?://[^/]+(/password-reset/\S+)", mail.outbox[0].body).group(1)
    form_page = client.get(link, follow=True)
    assert form_page.status_code == 200
    set_url = form_page.redirect_chain[-1][0]
    done = client.post(set_url, {"new_password1": "a-brand-new-passphrase", "new_password2": "a-brand-new-passphrase"})
    assert done.status_code == 302
    assert login(client, "owner-a@example.com", "a-brand-new-passphrase").status_code == 302
    client.post(reverse("logout"))
    again = client.get(link, follow=True)
    assert "Link expired" in again.content.decode()


def test_password_reset_for_unknown_address_reveals_nothing(client, db):
    response = client.post(reverse("password_reset"), {"email": "nobody@example.com"})
    assert response.status_code == 302 and len(mail.outbox) == 0
