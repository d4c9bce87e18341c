"""The schema tells the truth: nullable fields, links, status codes, limits,
PATCH semantics and pagination parameters are what the server does."""
from __future__ import annotations

import pytest
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from accounts.services import API_KEY_NAME_MAX_LENGTH
from billing.models import BillingAccount, Invoice
from billing.services import account_for
from tenancy.models import Membership, Organization

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def spec():
    return SchemaGenerator().get_schema(request=None, public=True)


def component(spec, name):
    return spec["components"]["schemas"][name]["properties"]


def statuses(spec, path, method):
    return set(spec["paths"][path][method]["responses"])


def test_fields_read_through_a_nullable_relation_are_nullable(spec):
    assert component(spec, "ApiKey")["created_by"]["nullable"] is True
    assert component(spec, "Invitation")["invited_by"]["nullable"] is True
    assert component(spec, "UploadedModel")["created_by"]["nullable"] is True
    assert component(spec, "DatasetVersion")["base_model"]["nullable"] is True
    assert component(spec, "Job")["base_model"]["nullable"] is True


def test_invoice_links_are_null_not_blank_until_stripe_finalizes(spec, tenant_a, api_for):
    for name in ("hosted_invoice_url", "invoice_pdf"):
        assert component(spec, "Invoice")[name]["nullable"] is True
    now = timezone.now()
    Invoice.objects.create(organization=tenant_a.organization, stripe_invoice_id="in_draft", status="draft",
                           stripe_created=now, updated_from_event_at=now)
    invoice = api_for(tenant_a.key()).get("/api/v1/billing/invoices").json()[0]
    assert invoice["hosted_invoice_url"] is None and invoice["invoice_pdf"] is None


def test_error_statuses_follow_the_kind_of_operation(spec):
    assert statuses(spec, "/api/v1/organization", "get") == {"200", "401", "403", "404", "429"}
    assert {"400", "409", "413", "415"} <= statuses(spec, "/api/v1/organization", "patch")
    assert "402" in statuses(spec, "/api/v1/jobs", "post")
    assert "402" not in statuses(spec, "/api/v1/jobs/quote", "post")  # a quote never refuses for money
    assert {"409", "415"} <= statuses(spec, "/api/v1/jobs/{job_id}/cancel", "post")
    assert "409" in statuses(spec, "/api/v1/datasets/{dataset_id}", "delete")
    assert {"413", "415"} <= statuses(spec, "/api/v1/datasets", "post")
    for path in ("/api/v1/members", "/api/v1/api-keys", "/api/v1/jobs", "/api/v1/datasets", "/api/v1/models"):
        assert "400" in statuses(spec, path, "get"), path  # page_size


def test_undeclared_body_on_a_write_is_refused_as_documented(spec, tenant_a, api_for):
    response = api_for(tenant_a.key()).generic("POST", "/api/v1/billing/portal", "x", content_type="text/plain")
    assert response.status_code == 415
    assert "415" in statuses(spec, "/api/v1/billing/portal", "post")


def test_name_limits_in_the_schema_are_the_servers(spec, tenant_a, api_for):
    assert component(spec, "ApiKeyCreateRequest")["name"]["maxLength"] == API_KEY_NAME_MAX_LENGTH == 100
    assert component(spec, "PatchedOrganizationUpdateRequest")["name"]["maxLength"] == 100
    for kind in ("Finetune", "Quantize", "Prune", "Distill"):  # POST /jobs: one body per kind (oneOf)
        assert component(spec, f"{kind}JobRequest")["name"]["maxLength"] == 100
    client = api_for(tenant_a.key())
    response = client.post("/api/v1/api-keys", {"name": "k" * 101, "scopes": ["read"]}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["name"] == ["Key names are at most 100 characters (this one has 101)."]
    assert client.post("/api/v1/api-keys", {"name": "k" * 100, "scopes": ["read"]}, format="json").status_code == 201


def test_patch_with_an_empty_body_is_a_no_op(tenant_a, api_for):
    from audit.models import AuditEvent

    client = api_for(tenant_a.key())
    organization = Organization.objects.get(pk=tenant_a.organization.pk)
    account = account_for(organization=organization)
    BillingAccount.objects.filter(pk=account.pk).update(spend_cap_cents=1234)
    events = AuditEvent.objects.count()

    response = client.patch("/api/v1/organization", {}, format="json")
    assert response.status_code == 200 and response.json()["name"] == "Acme"
    assert Organization.objects.get(pk=organization.pk).updated_at == organization.updated_at

    membership = tenant_a.owner_membership
    response = client.patch(f"/api/v1/members/{membership.pk}", {}, format="json")
    assert response.status_code == 200 and response.json()["role"] == membership.role
    assert Membership.objects.get(pk=membership.pk).updated_at == membership.updated_at
    assert client.patch("/api/v1/members/999999", {}, format="json").status_code == 404

    response = client.patch("/api/v1/billing/spend-cap", {}, format="json")
    assert response.status_code == 200 and response.json()["spend_cap_cents"] == 1234
    assert BillingAccount.objects.get(pk=account.pk).spend_cap_cents == 1234
    assert AuditEvent.objects.count() == events


@pytest.mark.parametrize("value", ["AAA", "-1", "0", "201", "1.5", "", str(10**30)])
@pytest.mark.parametrize("path", ["/api/v1/members", "/api/v1/api-keys", "/api/v1/jobs", "/api/v1/datasets"])
def test_bad_page_size_is_a_400_naming_it(tenant_a, api_for, path, value):
    response = api_for(tenant_a.key()).get(path, {"page_size": value})
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert list(error["fields"]) == ["page_size"] and "from 1 to 200" in error["message"]


def test_page_size_bounds_are_in_the_schema_and_accepted(spec, tenant_a, api_for):
    parameters = {p["name"]: p for p in spec["paths"]["/api/v1/members"]["get"]["parameters"]}
    assert parameters["page_size"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}
    client = api_for(tenant_a.key())
    assert client.get("/api/v1/members", {"page_size": "200"}).status_code == 200
    assert client.get("/api/v1/members?page_size=2&page_size=3").status_code == 400


def test_a_cursor_the_server_did_not_hand_out_names_the_parameter(tenant_a, api_for):
    response = api_for(tenant_a.key()).get("/api/v1/members", {"cursor": "bm90IGEgY3Vyc29y"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "invalid_cursor" and "cursor" in response.json()["error"]["fields"]


def test_query_parameters_given_blank_or_unknown_are_refused(tenant_a, api_for):
    client = api_for(tenant_a.key())
    assert "state" in client.get("/api/v1/jobs?state=").json()["error"]["fields"]
    assert "period" in client.get("/api/v1/billing/usage?period=AAA").json()["error"]["fields"]
    assert client.get("/api/v1/billing/usage?period=previous").status_code == 200


def test_values_of_the_wrong_json_type_are_refused_not_coerced(tenant_a, api_for):
    client = api_for(tenant_a.key())
    response = client.patch("/api/v1/organization", {"name": 0}, format="json")
    assert response.status_code == 400 and "name" in response.json()["error"]["fields"]
    assert Organization.objects.get(pk=tenant_a.organization.pk).name == "Acme"
    account = account_for(organization=tenant_a.organization)
    BillingAccount.objects.filter(pk=account.pk).update(spend_cap_cents=500)
    for blank in ("", " ", "\x1d"):  # DRF reads a blank amount as null: no cap at all
        response = client.patch("/api/v1/billing/spend-cap", {"spend_cap_usd": blank}, format="json")
        assert response.status_code == 400 and "spend_cap_usd" in response.json()["error"]["fields"]
    assert BillingAccount.objects.get(pk=account.pk).spend_cap_cents == 500


def test_nested_field_errors_are_one_level_as_the_schema_says(tenant_a, api_for):
    response = api_for(tenant_a.key()).post("/api/v1/api-keys", {"name": "n", "scopes": [{}]}, format="json")
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert list(fields) == ["scopes"] and fields["scopes"] == ['item 0: "{}" is not a valid choice.']
