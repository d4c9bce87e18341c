def organizations(request):
    """The organization switcher's entries and the current organization."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    from tenancy.selectors import organization_list_for_user

    organization = getattr(request, "organization", None)
    return {
        # Billing's banner (past due, spend-cap thresholds), computed only if a full page shows it.
        "billing_banner": (lambda: _banner(organization)) if organization is not None else None,
        # A queryset, evaluated only if the template shows the switcher (partials don't).
        "my_organizations": organization_list_for_user(user=user),
        "current_organization": getattr(request, "organization", None),
        "current_membership": getattr(request, "membership", None),
    }


def _banner(organization):
    from billing.selectors import banner_for

    return banner_for(organization=organization)
