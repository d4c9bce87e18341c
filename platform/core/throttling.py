from rest_framework.throttling import SimpleRateThrottle


class OrganizationRateThrottle(SimpleRateThrottle):
    """One request budget per organization, whichever key or member spends it.

    Abuse protection and fairness, not a security control (DRF's cache ops are not
    atomic). The rate is the organization's plan's (billing.Plan.api_rate).
    """

    scope = "organization"

    def allow_request(self, request, view):
        organization = getattr(request, "organization", None)
        if organization is not None:
            from billing.services import plan_for

            self.rate = plan_for(organization=organization).api_rate or self.rate
            self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request, view):
        organization = getattr(request, "organization", None)
        if organization is None:
            return None
        return self.cache_format % {"scope": self.scope, "ident": organization.pk}


class AnonymousRateThrottle(SimpleRateThrottle):
    scope = "anonymous"

    def get_cache_key(self, request, view):
        if request.user and request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
