"""Who is acting inside an organization: a member (through the dashboard or a
session-authenticated API call) or an API key. Services check permissions
against the actor's role, so both paths obey the same rules."""
from __future__ import annotations

from dataclasses import dataclass

from .models import ROLE_RANK, Role


@dataclass(frozen=True)
class Actor:
    role: str
    user: object | None = None  # accounts.User for a person
    api_key: object | None = None  # accounts.ApiKey for a key

    @classmethod
    def for_membership(cls, membership) -> "Actor":
        return cls(role=membership.role, user=membership.user)

    @classmethod
    def for_api_key(cls, api_key, *, creator_role: str) -> "Actor":
        """A key acts with its scope's role capped by its creator's *current* role:
        an admin-scoped key of an admin demoted to member acts as a member.
        A key may administer, never own: ownership is a person's."""
        scope_role = Role.ADMIN if api_key.has_scope("admin") else Role.MEMBER
        role = min(scope_role, Role(creator_role), key=lambda r: ROLE_RANK[Role(r)])
        return cls(role=role, api_key=api_key, user=None)

    @property
    def person(self):
        """The person responsible: the member acting, or the creator of the key acting."""
        if self.user is not None:
            return self.user
        return self.api_key.created_by if self.api_key is not None else None

    def has_role(self, minimum: str) -> bool:
        return ROLE_RANK[Role(self.role)] >= ROLE_RANK[Role(minimum)]

    def require_admin_or_creator(self, created_by_id, *, what: str) -> None:
        """Deleting what someone uploaded: admins and owners, or that person."""
        from core.errors import PermissionDenied

        if self.has_role(Role.ADMIN) or (self.user is not None and self.user.pk == created_by_id):
            return
        raise PermissionDenied(f"Only an admin, an owner or the uploader can delete {what}.")

    @property
    def label(self) -> str:
        if self.user is not None:
            return str(self.user)
        return f"API key {self.api_key.prefix}" if self.api_key else "system"
