import logging
import subprocess
import sys
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from core.logging import RequestIDFilter
from tenancy.models import Membership, Organization

pytestmark = pytest.mark.django_db
REPO_ROOT = Path(__file__).resolve().parents[2]


def assert_error_body(response, status, code=None):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "fields", "request_id"}
    assert error["message"] and error["request_id"] == response["X-Request-ID"]
    if code:
        assert error["code"] == code
    return error


def test_every_error_has_the_same_body(tenant_a, api_for):
    client = api_for(tenant_a.key())
    assert_error_body(APIClient().get("/api/v1/members"), 401, "not_authenticated")
    assert_error_body(client.get("/api/v1/members/999999"), 404, "not_found")
    assert_error_body(client.get("/api/v1/no-such-endpoint"), 404, "not_found")
    assert_error_body(client.post("/api/v1/organization", {}, format="json"), 405, "method_not_allowed")
    error = assert_error_body(client.patch("/api/v1/organization", {"name": ""}, format="json"), 400, "invalid")
    assert "name" in error["fields"]
    malformed = client.generic("PATCH", "/api/v1/organization", "{not json", content_type="application/json")
    assert_error_body(malformed, 400, "parse_error")


def test_ten_thousand_character_name_names_field_and_limit(tenant_a, api_for):
    client = api_for(tenant_a.key())
    error = assert_error_body(client.patch("/api/v1/organization", {"name": "n" * 10_000}, format="json"), 400)
    assert error["fields"]["name"] == ["Organization names are at most 100 characters (this one has 10000)."]
    assert Organization.objects.get(pk=tenant_a.organization.pk).name == "Acme"


def test_request_id_generated_or_propagated(tenant_a, api_for):
    client = api_for(tenant_a.key())
    generated = client.get("/api/v1/organization")["X-Request-ID"]
    assert len(generated) == 32
    assert client.get("/api/v1/organization", HTTP_X_REQUEST_ID="trace-abc-123")["X-Request-ID"] == "trace-abc-123"
    # A hostile value (log injection) is replaced, not echoed.
    hostile = client.get("/api/v1/organization", HTTP_X_REQUEST_ID="x\nFAKE LOG LINE")["X-Request-ID"]
    assert "\n" not in hostile and "FAKE" not in hostile
    assert APIClient().get("/healthz")["X-Request-ID"]


def test_request_id_appears_in_log_lines(tenant_a):
    records = []

    class Capture(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    handler = Capture()
    handler.addFilter(RequestIDFilter())
    handler.setFormatter(logging.Formatter("[%(request_id)s] %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        response = APIClient().get("/api/v1/organization", HTTP_AUTHORIZATION="Bearer lth_bad", HTTP_X_REQUEST_ID="req-log-check-1")
    finally:
        root.removeHandler(handler)
    assert response.status_code == 401
    assert any(line.startswith("[req-log-check-1] accounts.authentication: API key rejected") for line in records), records
    assert any(line.startswith("[req-log-check-1] django.request") for line in records), records


def test_cursor_pagination(tenant_a, api_for, make_user):
    for i in range(7):
        tenant_a.add_member(make_user(email=f"p{i}@example.com"))
    client = api_for(tenant_a.key())
    seen, url = [], "/api/v1/members?page_size=3"
    while url:
        page = client.get(url).json()
        assert len(page["results"]) <= 3
        seen.extend(m["id"] for m in page["results"])
        url = page["next"]
    expected = list(Membership.objects.filter(organization=tenant_a.organization).order_by("-created_at", "-id").values_list("id", flat=True))
    assert seen == expected and len(seen) == 8


def test_trailing_slash_is_tolerated(tenant_a, api_for):
    client = api_for(tenant_a.key())
    assert client.get("/api/v1/organization/").json()["slug"] == "acme"
    created = client.post("/api/v1/api-keys/", {"name": "slash", "scopes": ["read"]}, format="json")
    assert created.status_code == 201


def test_throttling_is_per_organization(tenant_a, tenant_b, api_for, monkeypatch):
    from billing.models import Plan
    from billing.services import plan_for

    plan_for(organization=tenant_a.organization)  # the plans exist
    Plan.objects.filter(slug="free").update(api_rate="3/min")  # the plan's rate is the organization's budget
    key_one, key_two = api_for(tenant_a.key()), api_for(tenant_a.key())
    assert [key_one.get("/api/v1/organization").status_code for _ in range(2)] == [200, 200]
    assert key_two.get("/api/v1/organization").status_code == 200  # same budget, other key
    throttled = key_two.get("/api/v1/organization")
    error = assert_error_body(throttled, 429, "throttled")
    assert "Retry-After" in throttled
    assert "available in" in error["message"]
    # Another organization has its own budget.
    assert api_for(tenant_b.key()).get("/api/v1/organization").status_code == 200


def test_healthz_is_cheap_and_readyz_checks_database_and_broker():
    client = APIClient()
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.content
    assert ready.json()["checks"]["database"]["ok"] and ready.json()["checks"]["broker"]["ok"]


def test_readyz_fails_when_the_broker_is_unreachable():
    from config.celery_app import app

    original = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    try:
        response = APIClient().get("/readyz")
    finally:
        app.conf.broker_url = original
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["broker"]["ok"] is False and body["checks"]["database"]["ok"] is True


def test_schema_and_docs_are_served():
    client = APIClient()
    schema = client.get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    spec = schema.json()
    assert spec["openapi"].startswith("3.")
    assert "/api/v1/api-keys" in spec["paths"]
    assert spec["components"]["securitySchemes"]["ApiKeyAuth"]["scheme"] == "bearer"
    assert "ErrorResponse" in spec["components"]["schemas"]
    assert client.get("/api/v1/docs").status_code == 200


def test_spectacular_validate_fail_on_warn_is_clean(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stderr and "Error" not in result.stderr
    assert (tmp_path / "schema.yml").read_text().startswith("openapi: 3")
