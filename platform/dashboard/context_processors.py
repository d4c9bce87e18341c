def organizations(request):
    """The organization switcher's entries and the current organization."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    from tenancy.selectors import organization_list_for_user

    return {
        # A queryset, evaluated only if the template shows the switcher (partials don't).
        "my_organizations": organization_list_for_user(user=user),
        "current_organization": getattr(request, "organization", None),
        "current_membership": getattr(request, "membership", None),
    }
