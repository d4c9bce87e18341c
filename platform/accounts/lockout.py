"""The identity django-axes counts failed log-ins against: the address as the log-in
itself matches it (case-folded, trimmed), so `USER@X.COM` and `user@x.com` share
one counter. The client IP comes from core.client_ip (settings.AXES_CLIENT_IP_CALLABLE)."""
from __future__ import annotations

from django.conf import settings


def normalize_login_identity(value) -> str:
    return str(value or "").strip().lower()


def lockout_username(request, credentials=None) -> str:
    field = settings.AXES_USERNAME_FORM_FIELD
    if credentials and credentials.get(field) is not None:
        return normalize_login_identity(credentials.get(field))
    data = getattr(request, "POST", None) or {}
    return normalize_login_identity(data.get(field))
