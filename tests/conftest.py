"""Shared fixtures: people, organizations, keys and API clients built through the
real services, so tests exercise the same paths users do."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

from accounts.models import User
from accounts.services import api_key_create
from tenancy.actors import Actor
from tenancy.models import Membership, Organization, Role
from tenancy.services import organization_create

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(autouse=True)
def _fresh_cache():
    # Throttle counters and axes state must not leak between tests.
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def one_torchrun_group_at_a_time():
    """Holds a host-wide lock for the test: `make test` runs two test processes (pytest -n 2), and two
    torchrun groups launched at once on a loaded host lost a rank (SIGABRT) in CI. (xdist's own grouping,
    --dist loadgroup, would run schemathesis' per-operation subtests as one.)"""
    import fcntl
    import tempfile
    from pathlib import Path

    with open(Path(tempfile.gettempdir()) / "lathe-tests-torchrun.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture
def make_user(db):
    counter = {"n": 0}

    def make(email: str | None = None, password: str = PASSWORD, **extra) -> User:
        counter["n"] += 1
        return User.objects.create_user(email=email or f"user{counter['n']}@example.com", password=password, **extra)

    return make


@dataclass
class Tenant:
    organization: Organization
    owner: User
    owner_membership: Membership

    def add_member(self, user: User, role: str = Role.MEMBER) -> Membership:
        return Membership.objects.create(organization=self.organization, user=user, role=role)

    def key(self, scopes=("read", "write", "admin"), **kwargs) -> str:
        _row, full_key = api_key_create(
            organization=self.organization, actor=Actor.for_membership(self.owner_membership),
            name=kwargs.pop("name", "test key"), scopes=list(scopes), **kwargs,
        )
        return full_key


@pytest.fixture
def make_tenant(make_user):
    def make(name: str = "Acme", owner_email: str | None = None) -> Tenant:
        owner = make_user(email=owner_email)
        organization = organization_create(name=name, owner=owner)
        return Tenant(organization, owner, Membership.objects.get(organization=organization, user=owner))

    return make


@pytest.fixture
def tenant_a(make_tenant):
    return make_tenant("Acme", "owner-a@example.com")


@pytest.fixture
def tenant_b(make_tenant):
    return make_tenant("Beta", "owner-b@example.com")


def bearer_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


@pytest.fixture
def api_for():
    return bearer_client


@pytest.fixture(autouse=True)
def default_plans(request):
    """Billing's default plans and the catalog's MiniLM are seeded by
    migrations; transactional tests flush them, so every database test starts
    with them present."""
    marker = request.node.get_closest_marker("django_db")
    if marker is None:
        return
    transactional = marker.kwargs.get("transaction") or "transactional_db" in request.fixturenames
    request.getfixturevalue("transactional_db" if transactional else "db")
    from billing.plans import ensure_default_plans
    from catalog.defaults import ensure_default_models

    ensure_default_plans()
    ensure_default_models()
