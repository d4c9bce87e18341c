"""The client's IP address: one rule for log-in lock-out, throttles, logs and the audit log.

Behind `NUM_PROXIES` trusted reverse proxies, each proxy appends the address it
received the request from to `X-Forwarded-For`, so the client is the entry that
many places from the right; anything further left was written by the client
and proves nothing. With no proxies (the default), `REMOTE_ADDR` alone counts
and `X-Forwarded-For` is ignored — trusting it there would let any caller pick
its own address. The rule is DRF's `NUM_PROXIES` rule, shared.
"""
from __future__ import annotations

import contextvars
import ipaddress

from django.conf import settings

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("client_ip", default=None)


def _valid(candidate: str | None) -> str | None:
    candidate = (candidate or "").strip()
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


def client_ip(request) -> str | None:
    """The address this request came from, as the proxy setting decides."""
    meta = getattr(request, "META", {})
    remote = _valid(meta.get("REMOTE_ADDR"))
    proxies = settings.NUM_PROXIES
    forwarded = meta.get("HTTP_X_FORWARDED_FOR", "")
    if proxies <= 0 or not forwarded:
        return remote
    hops = [hop for hop in (part.strip() for part in forwarded.split(",")) if hop]
    if not hops:
        return remote
    return _valid(hops[-min(proxies, len(hops))]) or remote


def current_client_ip() -> str | None:
    """The client IP of the request being handled (None outside a request)."""
    return _current.get()


def set_current_client_ip(value: str | None) -> contextvars.Token:
    return _current.set(value)


def reset_current_client_ip(token: contextvars.Token) -> None:
    _current.reset(token)
