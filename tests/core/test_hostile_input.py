"""Hostile input, table-driven.

Every write route of the JSON API (POST/PUT/PATCH/DELETE under /api/v1/, found
through the URL resolver, plus the Stripe webhook) gets a table of hostile
bodies: JSON nested 100,000 deep, a body over DATA_UPLOAD_MAX_MEMORY_SIZE,
1e400 / -1e400 / 5,000-digit numbers / NaN / NUL characters in every field,
unknown fields, wrong types (a list for an object, a string for a number),
not-JSON, an empty body and wrong Content-Types. Each answer must be a 4xx with
the uniform JSON error body, and no table of any app may gain or lose a row.

A new write route without an entry in ENDPOINTS fails
`test_every_write_route_is_in_the_table`. Webhook bodies are signed with the
webhook secret, so they reach the event checks rather than stopping at the
signature.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Callable

import pytest
from django.apps import apps
from django.db import connection
from tests.url_routes import url_patterns
from rest_framework.test import APIClient

from billing.models import StripeEvent
from billing.services import plan_for
from core.parsers import MAX_JSON_DEPTH, MAX_JSON_INTEGER
from tenancy.actors import Actor
from tenancy.models import Organization, Role
from tenancy.services import invitation_create
from tests.billing.conftest import WEBHOOK_SECRET, signature
from tests.test_tenant_isolation import _dataset_for, _job_for, _model_upload

pytestmark = pytest.mark.django_db

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
JSON_ROUTE_PREFIXES = ("api/v1/", "stripe/")


# --- the world: one organization with one of everything ----------------------

@dataclass
class World:
    tenant: object  # tests.conftest.Tenant
    key: str
    member_id: int
    invitation_id: int
    other_key_id: int
    dataset_id: int
    job_id: int
    model_id: int


@pytest.fixture
def world(make_tenant, make_user, settings, tmp_path):
    from accounts.models import ApiKey

    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    tenant = make_tenant("Acme", "owner@example.com")
    # Hundreds of requests a minute: a 429 must not stand in for the answer under test.
    plan_for(organization=tenant.organization).__class__.objects.update(api_rate="100000/min")
    member = tenant.add_member(make_user(email="member@example.com"))
    invitation, _token = invitation_create(organization=tenant.organization, actor=Actor.for_membership(tenant.owner_membership),
                                           email="invitee@example.com", role=Role.MEMBER)
    tenant.key(name="other key")
    from catalog.models import BaseModel

    BaseModel.objects.create(slug="hostile-chat", name="Hostile chat", architecture="llama", task_family="chat",
                             source_kind="path", source=str(tmp_path / "no-such-model"), supported_tasks=["chat"])
    dataset = _dataset_for(tenant, "hostile")
    job = _job_for(tenant, dataset)
    model = _model_upload(tenant, tmp_path / "model", "hostile-model")
    return World(tenant, tenant.key(name="hostile", scopes=("read", "write", "admin")), member.pk, invitation.pk,
                 ApiKey.objects.get(name="other key").pk, dataset.pk, job.pk, model.pk)


# --- the table ----------------------------------------------------------------

@dataclass(frozen=True)
class Endpoint:
    path: Callable[[World], str]
    # Well-formed bodies whose fields are replaced one at a time; () for an
    # endpoint that reads no body (its body is still parsed and refused when
    # malformed, but fields in it are ignored, so only the parse-level cases apply).
    bodies: Callable[[World], tuple[dict, ...]] = lambda w: ()
    # The first body, sent as it is after the hostile ones, must succeed: the
    # refusals above were the hostile parts', not a broken template's.
    control: bool = False


def _finetune(w):
    return {"kind": "finetune", "dataset_id": w.dataset_id, "dataset_version": 1, "base_model": "all-minilm-l6-v2",
            "method": "lora", "name": "hostile", "max_cost": "5.00",
            "hyperparameters": {"epochs": 2, "batch_size": 16, "max_length": 64, "seed": 7, "lora_r": 8, "lora_alpha": 16,
                                "learning_rate": 0.0001, "warmup_ratio": 0.1, "lora_targets": ["query", "value"]}}


def _chat(w):
    """A chat fine-tune's body: its hyperparameters are the chat declaration's, checked before the data (the
    world's dataset is a classifier's, so even the well-formed body is a 400 naming dataset_id)."""
    return {"kind": "chat_finetune", "dataset_id": w.dataset_id, "base_model": "hostile-chat", "method": "lora",
            "hyperparameters": {"epochs": 2, "batch_size": 4, "max_length": 256, "lora_r": 8, "learning_rate": 2e-4,
                                "lora_targets": ["q_proj", "v_proj"], "seed": 1}}


def _compressions(w):
    return ({"kind": "distill", "source_job_id": w.job_id, "student_layers": 2, "temperature": 2.0, "alpha": 0.5,
             "max_accuracy_drop": 1.0, "hyperparameters": {"epochs": 2, "batch_size": 8, "max_length": 64, "seed": 3}},
            {"kind": "prune", "source_job_id": w.job_id, "prune_method": "heads", "sparsity": 0.3, "recovery_epochs": 1})


def _webhook_event(w):
    return ({"id": "evt_hostile_1", "type": "invoice.paid", "created": int(time.time()), "livemode": False,
             "data": {"object": {"id": "in_hostile", "customer": "cus_hostile"}}},)


UPLOAD_FIELDS = {"name": "upload", "max_length": 64, "validation_fraction": 0.2, "seed": 1, "text_column": "text"}
CHAT_UPLOAD_FIELDS = {"name": "chat upload", "task": "chat", "max_length": 64, "validation_fraction": 0.2, "seed": 1}

ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    ("PATCH", "api/v1/organization"): Endpoint(lambda w: "/api/v1/organization", lambda w: ({"name": "Renamed"},), control=True),
    ("PATCH", "api/v1/members/<id:membership_id>"): Endpoint(lambda w: f"/api/v1/members/{w.member_id}",
                                                              lambda w: ({"role": "admin"},), control=True),
    ("DELETE", "api/v1/members/<id:membership_id>"): Endpoint(lambda w: f"/api/v1/members/{w.member_id}"),
    ("POST", "api/v1/invitations"): Endpoint(lambda w: "/api/v1/invitations",
                                             lambda w: ({"email": "new@example.com", "role": "member"},), control=True),
    ("DELETE", "api/v1/invitations/<id:invitation_id>"): Endpoint(lambda w: f"/api/v1/invitations/{w.invitation_id}"),
    ("POST", "api/v1/api-keys"): Endpoint(lambda w: "/api/v1/api-keys",
                                          lambda w: ({"name": "new key", "scopes": ["read", "write"]},), control=True),
    ("DELETE", "api/v1/api-keys/<id:api_key_id>"): Endpoint(lambda w: f"/api/v1/api-keys/{w.other_key_id}"),
    ("POST", "api/v1/datasets"): Endpoint(lambda w: "/api/v1/datasets", lambda w: (UPLOAD_FIELDS, CHAT_UPLOAD_FIELDS)),
    ("DELETE", "api/v1/datasets/<id:dataset_id>"): Endpoint(lambda w: f"/api/v1/datasets/{w.dataset_id}"),
    ("POST", "api/v1/datasets/<id:dataset_id>/versions"): Endpoint(lambda w: f"/api/v1/datasets/{w.dataset_id}/versions",
                                                                    lambda w: (UPLOAD_FIELDS,)),
    ("DELETE", "api/v1/datasets/<id:dataset_id>/versions/<id:number>"): Endpoint(
        lambda w: f"/api/v1/datasets/{w.dataset_id}/versions/1"),
    ("POST", "api/v1/jobs"): Endpoint(lambda w: "/api/v1/jobs", lambda w: (_finetune(w), *_compressions(w), _chat(w)),
                                      control=True),
    ("POST", "api/v1/jobs/quote"): Endpoint(lambda w: "/api/v1/jobs/quote", lambda w: (_finetune(w), *_compressions(w), _chat(w)),
                                            control=True),
    ("POST", "api/v1/jobs/<id:job_id>/cancel"): Endpoint(lambda w: f"/api/v1/jobs/{w.job_id}/cancel"),
    ("POST", "api/v1/jobs/<id:job_id>/pause"): Endpoint(lambda w: f"/api/v1/jobs/{w.job_id}/pause"),
    ("POST", "api/v1/jobs/<id:job_id>/resume"): Endpoint(lambda w: f"/api/v1/jobs/{w.job_id}/resume"),
    ("PATCH", "api/v1/billing/spend-cap"): Endpoint(lambda w: "/api/v1/billing/spend-cap",
                                                    lambda w: ({"spend_cap_usd": "10.00"},), control=True),
    ("POST", "api/v1/billing/checkout"): Endpoint(lambda w: "/api/v1/billing/checkout",
                                                  lambda w: ({"plan": "pro", "success_url": "https://example.com/ok"},)),
    ("POST", "api/v1/billing/portal"): Endpoint(lambda w: "/api/v1/billing/portal"),
    ("POST", "api/v1/models"): Endpoint(lambda w: "/api/v1/models", lambda w: ({"name": "model"},)),
    ("DELETE", "api/v1/models/<id:model_id>"): Endpoint(lambda w: f"/api/v1/models/{w.model_id}"),
    ("POST", "api/v1/prediction-inputs"): Endpoint(lambda w: "/api/v1/prediction-inputs", lambda w: ({"name": "inputs"},)),
    ("DELETE", "api/v1/prediction-inputs/<id:input_id>"): Endpoint(lambda w: f"/api/v1/prediction-inputs/{w.job_id}"),
    ("POST", "stripe/webhook"): Endpoint(lambda w: "/stripe/webhook", _webhook_event),
    # Try-it (serving): every hostile variant is refused before a worker is asked (the world's job is not
    # succeeded, its model a classifier); tests/serving/test_inference_api.py names the fields.
    ("POST", "api/v1/jobs/<id:job_id>/predict"): Endpoint(lambda w: f"/api/v1/jobs/{w.job_id}/predict",
                                                          lambda w: ({"inputs": ["hello"], "artifact": "model.zip"},)),
    ("POST", "api/v1/models/<id:model_id>/predict"): Endpoint(
        lambda w: f"/api/v1/models/{w.model_id}/predict",
        lambda w: ({"inputs": ["hello"]}, {"messages": [{"role": "user", "content": "hi"}], "max_new_tokens": 8})),
}
# Function views have no class to read their methods from: they are named here.
FUNCTION_VIEW_METHODS = {"stripe/webhook": ("POST",)}


def write_routes() -> set[tuple[str, str]]:
    """(method, route) of every write handler under the JSON prefixes."""
    found = set()
    for route, _pattern, view_class in url_patterns():
        if not route.startswith(JSON_ROUTE_PREFIXES):
            continue
        if view_class is None:
            methods = FUNCTION_VIEW_METHODS.get(route)
            assert methods is not None, f"{route}: a function view; name its write methods in FUNCTION_VIEW_METHODS"
        else:
            methods = [m for m in WRITE_METHODS if hasattr(view_class, m.lower())]
        found.update((method, route) for method in methods)
    return found


def test_every_write_route_is_in_the_table():
    routes = write_routes()
    assert routes - set(ENDPOINTS) == set(), "write routes with no hostile-input case: add them to ENDPOINTS"
    assert set(ENDPOINTS) - routes == set(), "ENDPOINTS names routes that no longer exist"


# --- hostile bodies -----------------------------------------------------------

@dataclass(frozen=True)
class Hostile:
    name: str
    body: bytes
    content_type: str = "application/json"
    status: int | None = None  # a particular 4xx, where one is owed
    says: tuple[str, ...] = ()  # what the message must mention


RAW = "\u2063raw\u2063"  # a placeholder replaced by a literal json.dumps cannot write
DEEP = b"[" * 100_000 + b"]" * 100_000
FIVE_THOUSAND_DIGITS = "9" * 5000
# Refused by the JSON parser in whichever field they are: the first four are put
# in every field, all of them in each body's first field and as the whole body.
PARSE_LEVEL = {
    "1e400": "1e400", "-1e400": "-1e400", "5000 digits": FIVE_THOUSAND_DIGITS, "NUL": json.dumps("a\u0000b"),
    "-5000 digits": "-" + FIVE_THOUSAND_DIGITS, "NaN": "NaN", "-Infinity": "-Infinity",
    "beyond 64 bits": str(MAX_JSON_INTEGER + 1), "lone surrogate": '"\\ud800"',
    f"nested {MAX_JSON_DEPTH + 1} deep": "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1),
}
EVERY_FIELD = ("1e400", "-1e400", "5000 digits", "NUL")


def _with(body: dict, path: tuple[str, ...], value) -> dict:
    out = json.loads(json.dumps(body))
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


def _raw(body: dict, literal: str) -> bytes:
    return json.dumps(body).replace(json.dumps(RAW), literal).encode()


def _fields(body: dict):
    """(path, value) of every field and of every field of an object-valued field."""
    for key, value in body.items():
        yield (key,), value
        if isinstance(value, dict):
            for inner, inner_value in value.items():
                yield (key, inner), inner_value


def hostile_bodies(method: str, endpoint: Endpoint, w: World) -> list[Hostile]:
    from django.conf import settings

    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    bodies = endpoint.bodies(w)
    template = bodies[0] if bodies else {"reason": "none", "count": 1}
    first = next(iter(template))
    cases = [
        Hostile("nested 100,000 deep", DEEP, status=400, says=(str(MAX_JSON_DEPTH),)),
        Hostile("object nested 100,000 deep", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, status=400,
                says=(str(MAX_JSON_DEPTH),)),
        Hostile("over the size limit", json.dumps({first: "x" * (limit + 1)}).encode(), status=413, says=(f"{limit:,}",)),
        Hostile("not JSON", b"{not json", status=400),
        Hostile("not UTF-8", b'{"name": "\xff\xfe"}', status=400),
        Hostile("text/plain", json.dumps(template).encode(), content_type="text/plain", status=415),
        Hostile("form-encoded", b"name=x&role=admin", content_type="application/x-www-form-urlencoded", status=415),
        Hostile("multipart without a boundary", b"--x\r\n", content_type="multipart/form-data"),
        Hostile("a charset that decompresses", json.dumps(template).encode(), content_type="application/json; charset=bz2_codec"),
    ]
    for number, literal in PARSE_LEVEL.items():
        cases.append(Hostile(f"{number} as the body", literal.encode(), status=400))
    for body_index, body in enumerate(bodies or (template,)):
        for field_index, (path, value) in enumerate(_fields(body)):
            dotted = ".".join(path)
            for number, literal in PARSE_LEVEL.items():
                if field_index and number not in EVERY_FIELD:
                    continue
                says = (dotted,) if "nested" not in number else (str(MAX_JSON_DEPTH),)
                cases.append(Hostile(f"body {body_index}: {dotted} = {number}", _raw(_with(body, path, RAW), literal),
                                     status=400, says=says))
    if not bodies:
        return cases
    # Fields are read: bodies with the wrong shape must be refused too (a PATCH
    # of nothing, an empty body or {}, is a no-op that answers 200).
    cases += [] if method == "PATCH" else [Hostile("empty body", b"")]
    cases += [
        Hostile("unknown fields only", json.dumps({"zzz_unknown": 1, "also_unknown": "x"}).encode()),
        Hostile("a list for the object", json.dumps(bodies).encode()),
        Hostile("a string for the object", json.dumps("text").encode()),
        Hostile("null for the object", b"null"),
    ]
    for body_index, body in enumerate(bodies):
        for path, value in _fields(body):
            dotted = ".".join(path)
            wrong = {}
            if not isinstance(value, list):
                wrong["a list"] = [value]
            if not isinstance(value, dict):
                wrong["an object"] = {"x": value}
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                wrong.update({"a string": "yesterday", "1e300": 1e300, "-1e300": -1e300,
                              "the largest 64-bit integer": MAX_JSON_INTEGER, "its negative": -MAX_JSON_INTEGER,
                              "true": True})
            for what, bad in wrong.items():
                cases.append(Hostile(f"body {body_index}: {dotted} = {what}", json.dumps(_with(body, path, bad)).encode()))
    return cases


# --- the check ----------------------------------------------------------------

def row_counts() -> dict[str, int]:
    """Rows in every table of every app, in one query."""
    tables = sorted({m._meta.db_table for m in apps.get_models() if m._meta.managed and not m._meta.proxy})
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(f"(SELECT COUNT(*) FROM {quote(t)})" for t in tables))
        return dict(zip(tables, cursor.fetchone()))


def send(client: APIClient, method: str, path: str, case: Hostile, *, sign: bool):
    extra = {"HTTP_STRIPE_SIGNATURE": signature(case.body)} if sign else {}
    return client.generic(method, path, data=case.body, content_type=case.content_type, **extra)


def assert_uniform_error(response, case: Hostile) -> dict:
    label = f"{case.name}: {response.status_code} {response.content[:300]!r}"
    assert 400 <= response.status_code < 500 and response.status_code != 429, label
    if case.status:
        assert response.status_code == case.status, label
    assert response["Content-Type"].startswith("application/json"), label
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "fields", "request_id"}, label
    error = body["error"]
    assert error["message"] and error["request_id"] == response["X-Request-ID"], label
    text = error["message"] + json.dumps(error["fields"])
    for word in case.says:
        assert word in text, f"{label}: the answer should mention {word!r}"
    return error


@pytest.mark.parametrize("route", sorted(ENDPOINTS), ids=lambda r: f"{r[0]} {r[1]}")
def test_hostile_bodies_get_a_4xx_and_write_nothing(world, route):
    method, _ = route
    endpoint = ENDPOINTS[route]
    path = endpoint.path(world)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {world.key}")
    sign = path == "/stripe/webhook"
    before = row_counts()
    for case in hostile_bodies(method, endpoint, world):
        response = send(client, method, path, case, sign=sign)
        assert_uniform_error(response, case)
        assert row_counts() == before, f"{case.name}: rows were written or removed"
    if endpoint.control:
        control = endpoint.bodies(world)[0]
        response = client.generic(method, path, json.dumps(control), content_type="application/json")
        assert 200 <= response.status_code < 300, f"the table's own body is refused: {response.content[:300]!r}"


# --- the findings, one by one --------------------------------------------------

def test_depth_limit_is_exact(world, api_for):
    """64 levels parse (then the serializer says a name is not a list); 65 are refused by the parser."""
    client = api_for(world.key)
    inside = client.patch("/api/v1/organization", "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH, content_type="application/json")
    assert inside.status_code == 400 and inside.json()["error"]["code"] == "invalid"
    beyond = client.patch("/api/v1/organization", "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1),
                          content_type="application/json")
    assert beyond.status_code == 400 and beyond.json()["error"]["code"] == "parse_error"
    assert f"nested deeper than {MAX_JSON_DEPTH} levels" in beyond.json()["error"]["message"]


def test_oversized_json_body_is_413_naming_the_limit(world, api_for, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    response = api_for(world.key).patch("/api/v1/organization", {"name": "x" * 10_001}, format="json")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large" and "10,000 bytes" in response.json()["error"]["message"]
    assert Organization.objects.get(pk=world.tenant.organization.pk).name == "Acme"


@pytest.mark.parametrize("field", ["epochs", "batch_size", "max_length", "seed", "lora_r", "lora_alpha", "learning_rate"])
@pytest.mark.parametrize("literal", ["1e400", "-1e400", FIVE_THOUSAND_DIGITS])
def test_out_of_range_hyperparameters_are_400_naming_the_field(world, api_for, field, literal):
    body = _with(_finetune(world), ("hyperparameters", field), RAW)
    for path in ("/api/v1/jobs/quote", "/api/v1/jobs"):
        response = api_for(world.key).post(path, _raw(body, literal), content_type="application/json")
        assert response.status_code == 400, response.content
        assert f"hyperparameters.{field}" in response.json()["error"]["fields"]


def test_number_checks_hold_without_the_parser():
    """The services are called by the dashboard's forms too: inf, NaN and
    5,000-digit integers are refused there with the field named, not an OverflowError."""
    from core.errors import ApplicationError
    from jobs import hyperparameters
    from jobs.submission import _compression_options

    for value in (float("inf"), float("-inf"), float("nan"), 10**5000, -(10**5000), 1e300, "3", True, [3]):
        with pytest.raises(ApplicationError) as caught:
            hyperparameters.check({"epochs": value})
        assert "hyperparameters.epochs" in caught.value.fields
        for name in ("student_layers", "temperature", "alpha"):
            with pytest.raises(ApplicationError) as caught:
                _compression_options("distill", {name: value})
            assert name in caught.value.fields and name in caught.value.message
    assert hyperparameters.check({"epochs": 3.0, "learning_rate": 1e-4}) == {"epochs": 3, "learning_rate": 1e-4}


# --- the Stripe webhook ---------------------------------------------------------

def _post_webhook(client, body: bytes, header: str | None = None):
    return client.post("/stripe/webhook", data=body, content_type="application/json",
                       HTTP_STRIPE_SIGNATURE=header if header is not None else signature(body))


@pytest.mark.parametrize("header", ["t=²,v1=abc", f"t={FIVE_THOUSAND_DIGITS},v1=abc", "t=١٢٣٤,v1=abc", "t=,v1=abc",
                                    "t=-5,v1=abc", "t=1 2,v1=abc", "t=0x10,v1=abc"])
def test_malformed_signature_headers_are_400_json_without_credentials(client, settings, header):
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    response = _post_webhook(client, json.dumps(_webhook_event(None)[0]).encode(), header)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_signature"
    assert not StripeEvent.objects.exists()


@pytest.mark.parametrize("change, field", [
    ({"id": "evt_" + "x" * 97}, "id"),
    ({"type": "invoice." + "x" * 93}, "type"),
    ({"created": "yesterday"}, "created"),
    ({"created": 1e20}, "created"),
    ({"created": 2**62}, "created"),
    ({"created": True}, "created"),
    ({"livemode": "yes"}, "livemode"),
    ({"data": []}, "data.object"),
    ({"data": {"object": "in_1"}}, "data.object"),
    ({"type": "invoice.paid\u0000"}, "type"),
    ({"data": {"object": {"id": "in_1", "customer": "cus_\u0000"}}}, "data.object.customer"),
])
def test_signed_events_that_cannot_be_stored_are_400_and_keep_nothing(client, settings, change, field):
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    event = dict(_webhook_event(None)[0], **change)
    response = _post_webhook(client, json.dumps(event).encode())
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_event" and field in error["message"]
    assert not StripeEvent.objects.exists()


def test_a_signed_event_at_the_limits_is_stored(client, settings):
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    event = dict(_webhook_event(None)[0], id="evt_" + "x" * 96, type="x" * 100)
    assert _post_webhook(client, json.dumps(event).encode()).status_code == 200
    assert StripeEvent.objects.get().stripe_id == event["id"]


def test_webhook_refusals_are_json(client, settings):
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    big = _post_webhook(client, json.dumps(dict(_webhook_event(None)[0], pad="x" * 10_001)).encode())
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"
    assert "10,000 bytes" in big.json()["error"]["message"]
    wrong_method = client.get("/stripe/webhook")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert not StripeEvent.objects.exists()


# --- sign-up --------------------------------------------------------------------

def test_signup_with_a_long_name_and_no_organization_name_gets_a_fitting_default(client, db):
    from accounts.models import User

    full_name = "Maximiliana " * 10  # 120 characters
    response = client.post("/signup", {"email": "long@example.com", "full_name": full_name,
                                       "password": "correct-horse-battery-staple", "organization_name": ""})
    assert response.status_code == 302, response.content.decode()[:2000]
    organization = Organization.objects.get(memberships__user__email="long@example.com")
    assert organization.name.startswith("Maximiliana Maximiliana") and organization.name.endswith("'s organization")
    assert len(organization.name) <= Organization._meta.get_field("name").max_length
    assert User.objects.get(email="long@example.com").full_name == full_name.strip()


def test_signup_with_a_too_long_organization_name_says_so_on_that_field(client, db):
    from accounts.models import User

    response = client.post("/signup", {"email": "org@example.com", "password": "correct-horse-battery-staple",
                                       "organization_name": "o" * 101})
    assert response.status_code == 400
    assert response.context["form"].errors["organization_name"] == [
        "Organization names are at most 100 characters (this one has 101)."]
    assert not User.objects.filter(email="org@example.com").exists()
