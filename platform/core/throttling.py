from rest_framework.throttling import SimpleRateThrottle

from tenancy.entitlements import request_entitlements

from .client_ip import client_ip


class OrganizationRateThrottle(SimpleRateThrottle):
    """One request budget per organization, whichever key or member spends it.

    Abuse protection and fairness, not a security control (DRF's cache ops are not
    atomic). The rate is the organization's plan's (its entitlements' api_rate,
    read once for the request: the view reuses the same read).
    """

    scope = "organization"

    def allow_request(self, request, view):
        organization = getattr(request, "organization", None)
        if organization is not None:
            self.rate = request_entitlements(request, organization=organization).api_rate or self.rate
            self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request, view):
        organization = getattr(request, "organization", None)
        if organization is None:
            return None
        return self.cache_format % {"scope": self.scope, "ident": organization.pk}


class AnonymousRateThrottle(SimpleRateThrottle):
    """Callers without credentials (the public schema, docs and sign-up paths),
    counted per client IP as core.client_ip decides (NUM_PROXIES)."""

    scope = "anonymous"

    def get_ident(self, request):
        return client_ip(request) or "unknown"

    def get_cache_key(self, request, view):
        if request.user and request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
