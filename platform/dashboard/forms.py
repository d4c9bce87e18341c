from django import forms
from django.contrib.auth.forms import AuthenticationForm

from accounts.models import ApiKeyScope
from core.errors import ApplicationError
from tenancy.models import Role


def apply_application_error(form: forms.Form, error: ApplicationError) -> None:
    """Show a service's error on the form: on its fields where it names them."""
    placed = False
    for field, messages in (error.fields or {}).items():
        target = field if field in form.fields else None
        for message in messages if isinstance(messages, list) else [messages]:
            form.add_error(target, message)
            placed = True
    if not placed:
        form.add_error(None, error.message)


class EmailAuthenticationForm(AuthenticationForm):
    username = forms.EmailField(label="E-mail", widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"}))


class SignupForm(forms.Form):
    email = forms.EmailField(label="E-mail", max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email"}))
    full_name = forms.CharField(label="Your name", max_length=150, required=False)
    password = forms.CharField(label="Password", widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
                               help_text="At least 10 characters, not a common password.")
    organization_name = forms.CharField(label="Organization name", required=False,
                                        help_text="You can rename it or create more later.")


class OrganizationForm(forms.Form):
    # The service enforces the real limit so its message names it.
    name = forms.CharField(label="Organization name", max_length=100_000)


class InvitationForm(forms.Form):
    email = forms.CharField(label="E-mail", max_length=254)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class ApiKeyForm(forms.Form):
    name = forms.CharField(label="Name", max_length=1000, help_text="What uses it, e.g. 'CI pipeline'.")
    scopes = forms.MultipleChoiceField(choices=ApiKeyScope.choices, widget=forms.CheckboxSelectMultiple,
                                       initial=[ApiKeyScope.READ])
    expires_at = forms.DateTimeField(label="Expires (optional, UTC)", required=False,
                                     widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
