from rest_framework.throttling import SimpleRateThrottle


class OrganizationRateThrottle(SimpleRateThrottle):
    """One request budget per organization, whichever key or member spends it.

    Abuse protection and fairness, not a security control (DRF's cache ops are not
    atomic). Later, plan limits replace the default rate.
    """

    scope = "organization"

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
