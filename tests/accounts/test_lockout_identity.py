"""Lock-out keys on the identity the log-in uses, and the client IP follows one rule
(core.client_ip, NUM_PROXIES) in lock-out, throttles and logs."""
import logging

import pytest
from django.test import RequestFactory, override_settings
from django.urls import reverse

from core.client_ip import client_ip
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def attempt(client, email, password, **headers):
    return client.post(reverse("login"), {"username": email, "password": password}, **headers)


@override_settings(AXES_FAILURE_LIMIT=5)
def test_letter_case_does_not_bypass_the_lockout(client, make_user):
    make_user(email="user@x.com")
    for _ in range(4):
        assert attempt(client, "User@x.com", "wrong-guess", REMOTE_ADDR="10.0.0.7").status_code == 400
    attempt(client, "User@x.com", "wrong-guess", REMOTE_ADDR="10.0.0.7")  # the fifth locks
    for spelling in ("USER@X.COM", "user@x.com", "  User@X.com "):
        locked = attempt(client, spelling, PASSWORD, REMOTE_ADDR="10.0.0.7")
        assert locked.status_code == 429, spelling


@pytest.mark.parametrize(
    ("num_proxies", "remote", "forwarded", "expected"),
    [
        (0, "10.0.0.1", "203.0.113.9", "10.0.0.1"),  # no proxy: the header is the caller's word
        (1, "10.0.0.1", "203.0.113.9", "203.0.113.9"),
        (1, "10.0.0.1", "6.6.6.6, 203.0.113.9", "203.0.113.9"),  # the left part was written by the client
        (2, "10.0.0.1", "6.6.6.6, 203.0.113.9, 10.0.0.2", "203.0.113.9"),
        (3, "10.0.0.1", "203.0.113.9", "203.0.113.9"),  # fewer hops than proxies: the leftmost
        (1, "10.0.0.1", "not-an-ip", "10.0.0.1"),
        (1, "10.0.0.1", "", "10.0.0.1"),
        (1, "10.0.0.1", "2001:db8::1", "2001:db8::1"),
    ],
)
def test_the_client_ip_rule(settings, num_proxies, remote, forwarded, expected):
    settings.NUM_PROXIES = num_proxies
    request = RequestFactory().get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
    assert client_ip(request) == expected


@override_settings(AXES_FAILURE_LIMIT=3, NUM_PROXIES=1)
def test_behind_a_proxy_each_client_has_its_own_lockout_counter(client, make_user):
    make_user(email="victim@x.com")
    proxy = {"REMOTE_ADDR": "10.0.0.1"}
    for _ in range(3):
        attempt(client, "victim@x.com", "wrong", HTTP_X_FORWARDED_FOR="198.51.100.66", **proxy)
    assert attempt(client, "victim@x.com", PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.66", **proxy).status_code == 429
    # The real owner, behind the same proxy, is not locked out by the attacker.
    assert attempt(client, "victim@x.com", PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.5", **proxy).status_code == 302


@override_settings(AXES_FAILURE_LIMIT=3, NUM_PROXIES=0)
def test_without_proxies_a_forged_header_does_not_escape_the_lockout(client, make_user):
    make_user(email="victim@x.com")
    for n in range(3):
        attempt(client, "victim@x.com", "wrong", REMOTE_ADDR="198.51.100.66", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}")
    again = attempt(client, "victim@x.com", PASSWORD, REMOTE_ADDR="198.51.100.66", HTTP_X_FORWARDED_FOR="192.0.2.200")
    assert again.status_code == 429


def test_anonymous_throttle_counts_per_client_behind_the_proxy(client, settings, monkeypatch):
    from core.throttling import AnonymousRateThrottle

    settings.NUM_PROXIES = 1
    monkeypatch.setattr(AnonymousRateThrottle, "THROTTLE_RATES", {"anonymous": "2/min"})
    proxy = {"REMOTE_ADDR": "10.0.0.1"}
    for _ in range(2):
        assert client.get("/api/v1/schema", HTTP_X_FORWARDED_FOR="198.51.100.1", **proxy).status_code == 200
    throttled = client.get("/api/v1/schema", HTTP_X_FORWARDED_FOR="198.51.100.1", **proxy)
    assert throttled.status_code == 429
    assert b"code: throttled" in throttled.content and throttled.has_header("Retry-After")  # the schema speaks YAML
    assert client.get("/api/v1/schema", HTTP_X_FORWARDED_FOR="198.51.100.2", **proxy).status_code == 200


def test_log_lines_carry_the_client_ip(client, settings, caplog):
    from core.logging import RequestIDFilter

    settings.NUM_PROXIES = 1
    logger, log_filter = logging.getLogger("accounts.authentication"), RequestIDFilter()
    logger.addFilter(log_filter)  # as the console handler does, at the moment of logging
    try:
        with caplog.at_level(logging.INFO, logger="accounts.authentication"):
            client.get("/api/v1/organization", HTTP_AUTHORIZATION="Bearer nope", REMOTE_ADDR="10.0.0.1",
                       HTTP_X_FORWARDED_FOR="198.51.100.77")
    finally:
        logger.removeFilter(log_filter)
    records = [r for r in caplog.records if "API key rejected" in r.getMessage()]
    assert records and records[0].client_ip == "198.51.100.77"
