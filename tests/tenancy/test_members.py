import pytest

from tenancy.models import Membership, Role

pytestmark = pytest.mark.django_db


def roles(tenant):
    return dict(Membership.objects.filter(organization=tenant.organization).values_list("user__email", "role"))


def test_owner_promotes_and_demotes_through_the_api(client, tenant_a, make_user):
    member = tenant_a.add_member(make_user(email="m@example.com"))
    client.force_login(tenant_a.owner)
    response = client.patch(f"/api/v1/members/{member.pk}", {"role": "admin"}, content_type="application/json")
    assert response.status_code == 200 and response.json()["role"] == "admin"
    assert roles(tenant_a)["m@example.com"] == Role.ADMIN


def test_last_owner_cannot_be_demoted(client, tenant_a):
    client.force_login(tenant_a.owner)
    before = roles(tenant_a)
    response = client.patch(f"/api/v1/members/{tenant_a.owner_membership.pk}", {"role": "member"}, content_type="application/json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "last_owner"
    assert "last owner" in response.json()["error"]["message"]
    assert roles(tenant_a) == before


def test_last_owner_cannot_leave_but_can_after_naming_another(client, tenant_a, make_user):
    client.force_login(tenant_a.owner)
    url = f"/api/v1/members/{tenant_a.owner_membership.pk}"
    assert client.delete(url).status_code == 409
    other = tenant_a.add_member(make_user(email="o2@example.com"), role=Role.OWNER)
    assert client.delete(url).status_code == 204
    assert list(Membership.objects.filter(organization=tenant_a.organization).values_list("pk", flat=True)) == [other.pk]


def test_last_owner_cannot_leave_from_the_dashboard(client, tenant_a):
    client.force_login(tenant_a.owner)
    response = client.post(f"/o/{tenant_a.organization.slug}/members/{tenant_a.owner_membership.pk}/remove")
    assert response.status_code == 409
    assert "last owner" in response.content.decode()
    assert Membership.objects.filter(pk=tenant_a.owner_membership.pk).exists()


def test_admin_cannot_touch_owners_or_grant_ownership(client, tenant_a, make_user):
    admin_user = make_user(email="adm@example.com")
    tenant_a.add_member(admin_user, role=Role.ADMIN)
    member = tenant_a.add_member(make_user(email="m@example.com"))
    client.force_login(admin_user)
    before = roles(tenant_a)
    assert client.patch(f"/api/v1/members/{tenant_a.owner_membership.pk}", {"role": "member"}, content_type="application/json").status_code == 403
    assert client.delete(f"/api/v1/members/{tenant_a.owner_membership.pk}").status_code == 403
    response = client.patch(f"/api/v1/members/{member.pk}", {"role": "owner"}, content_type="application/json")
    assert response.status_code == 403 and "Only an owner" in response.json()["error"]["message"]
    assert roles(tenant_a) == before
    # but can manage a plain member
    assert client.patch(f"/api/v1/members/{member.pk}", {"role": "admin"}, content_type="application/json").status_code == 200


def test_member_can_leave_but_not_remove_others(client, tenant_a, make_user):
    member_user = make_user(email="m@example.com")
    member = tenant_a.add_member(member_user)
    other = tenant_a.add_member(make_user(email="n@example.com"))
    client.force_login(member_user)
    assert client.delete(f"/api/v1/members/{other.pk}").status_code == 403
    assert client.delete(f"/api/v1/members/{member.pk}").status_code == 204
    assert not Membership.objects.filter(pk=member.pk).exists()
    assert Membership.objects.filter(pk=other.pk).exists()


def test_unknown_role_names_the_field(client, tenant_a, make_user):
    member = tenant_a.add_member(make_user())
    client.force_login(tenant_a.owner)
    response = client.patch(f"/api/v1/members/{member.pk}", {"role": "god"}, content_type="application/json")
    assert response.status_code == 400
    assert "role" in response.json()["error"]["fields"]


def test_dashboard_role_change(client, tenant_a, make_user):
    member = tenant_a.add_member(make_user(email="m@example.com"))
    client.force_login(tenant_a.owner)
    response = client.post(f"/o/{tenant_a.organization.slug}/members/{member.pk}/role", {"role": "admin"})
    assert response.status_code == 302
    assert roles(tenant_a)["m@example.com"] == Role.ADMIN


def test_concurrent_demotions_never_leave_zero_owners(transactional_db, make_tenant, make_user):
    """Two owners demote each other at the same time: one must fail."""
    import threading

    from django.db import connection

    from core.errors import ApplicationError
    from tenancy.actors import Actor
    from tenancy.services import membership_change_role

    tenant = make_tenant("Race", "r1@example.com")
    second = tenant.add_member(make_user(email="r2@example.com"), role=Role.OWNER)
    first = tenant.owner_membership
    barrier = threading.Barrier(2)
    outcomes = []

    def demote(actor_membership, target):
        try:
            barrier.wait()
            membership_change_role(organization=tenant.organization, actor=Actor.for_membership(actor_membership),
                                   membership_id=target.pk, role=Role.MEMBER)
            outcomes.append("ok")
        except ApplicationError as exc:
            outcomes.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=demote, args=(first, second)), threading.Thread(target=demote, args=(second, first))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["last_owner", "ok"]
    assert Membership.objects.filter(organization=tenant.organization, role=Role.OWNER).count() == 1
