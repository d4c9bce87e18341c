"""Ids in paths are bounded: a 30-digit id is a 404 like any id that names nothing
(it was an OverflowError — a 500 — in the database driver)."""
import pytest

from tests.conftest import bearer_client

pytestmark = pytest.mark.django_db

HUGE = "9" * 30


@pytest.mark.parametrize("method, path", [
    ("get", f"/api/v1/jobs/{HUGE}"),
    ("post", f"/api/v1/jobs/{HUGE}/cancel"),
    ("delete", f"/api/v1/datasets/{HUGE}"),
    ("get", f"/api/v1/datasets/1/versions/{HUGE}"),
    ("patch", f"/api/v1/members/{HUGE}"),
    ("get", f"/api/v1/jobs/{'9' * 19}"),  # just past a 64-bit integer
])
def test_api_ids_beyond_64_bits_are_not_found(tenant_a, method, path):
    response = getattr(bearer_client(tenant_a.key()), method)(path, {}, format="json")
    assert response.status_code == 404


def test_the_largest_64_bit_id_is_an_ordinary_miss(tenant_a):
    response = bearer_client(tenant_a.key()).get(f"/api/v1/jobs/{'9' * 18}")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_dashboard_ids_beyond_64_bits_are_not_found(client, tenant_a):
    client.force_login(tenant_a.owner)
    slug = tenant_a.organization.slug
    assert client.get(f"/o/{slug}/jobs/{HUGE}").status_code == 404
    assert client.post(f"/o/{slug}/datasets/{HUGE}/delete").status_code == 404
