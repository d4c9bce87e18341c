"""The web dashboard: server-rendered pages over the same services as the API.

Organization pages live under /o/<slug>/; the slug is resolved to the user's
membership once (OrganizationPageMixin), and a slug the user has no membership of
is a 404 — the same as one that does not exist.
"""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views import View

from accounts import selectors as account_selectors
from accounts import services as account_services
from audit import selectors as audit_selectors
from audit.models import AuditAction
from core.api import SESSION_ORGANIZATION_KEY
from core.errors import ApplicationError, NotFound
from tenancy import selectors as tenancy_selectors
from tenancy import services as tenancy_services
from tenancy.actors import Actor
from tenancy.models import Role

from .forms import EmailAuthenticationForm, ApiKeyForm, InvitationForm, OrganizationForm, RoleForm, SignupForm, apply_application_error

PENDING_INVITATION_SESSION_KEY = "pending_invitation_token"


def submit(form, service):
    """Validate `form` and call `service(**cleaned_data)`.

    Returns (result, None) on success, or (None, status) with the service's
    messages placed on the form's fields, so every page shows errors the same way.
    """
    if not form.is_valid():
        return None, 400
    try:
        return service(**form.cleaned_data), None
    except ApplicationError as error:
        apply_application_error(form, error)
        return None, error.status_code


class LoginView(auth_views.LoginView):
    authentication_form = EmailAuthenticationForm
    redirect_authenticated_user = True

    def form_invalid(self, form):
        # Wrong credentials are bad input: say so with a 4xx, not a 200.
        return self.render_to_response(self.get_context_data(form=form), status=400)


class HomeView(View):
    def get(self, request):
        if not request.user.is_authenticated:
            return redirect("login")
        organizations = tenancy_selectors.organization_list_for_user(user=request.user)
        wanted = request.session.get(SESSION_ORGANIZATION_KEY)
        organization = organizations.filter(pk=wanted).first() or organizations.first()
        if organization is None:
            return redirect("dashboard:organization-create")
        return redirect("dashboard:overview", slug=organization.slug)


class SignupView(View):
    template_name = "dashboard/signup.html"

    def get(self, request):
        if request.user.is_authenticated:
            return redirect("dashboard:home")
        initial = {"email": request.GET.get("email", "")}
        return render(request, self.template_name, {"form": SignupForm(initial=initial)})

    def post(self, request):
        form = SignupForm(request.POST)
        created, status = submit(form, account_services.user_signup)
        if created is None:
            return render(request, self.template_name, {"form": form}, status=status)
        user, organization = created
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        request.session[SESSION_ORGANIZATION_KEY] = organization.pk
        messages.success(request, f"Welcome to Lathe. {organization.name} is ready.")
        token = request.session.pop(PENDING_INVITATION_SESSION_KEY, None)
        if token:
            return redirect("dashboard:invitation-accept", token=token)
        return redirect("dashboard:overview", slug=organization.slug)


class OrganizationCreateView(LoginRequiredMixin, View):
    template_name = "dashboard/organization_create.html"

    def get(self, request):
        return render(request, self.template_name, {"form": OrganizationForm()})

    def post(self, request):
        form = OrganizationForm(request.POST)
        organization, status = submit(form, lambda name: tenancy_services.organization_create(name=name, owner=request.user))
        if organization is None:
            return render(request, self.template_name, {"form": form}, status=status)
        request.session[SESSION_ORGANIZATION_KEY] = organization.pk
        messages.success(request, f"Created {organization.name}.")
        return redirect("dashboard:overview", slug=organization.slug)


class OrganizationPageMixin(LoginRequiredMixin):
    """Resolves /o/<slug>/ to the user's membership once per request."""

    section = ""

    def dispatch(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        try:
            self.membership = tenancy_selectors.membership_for_user(user=request.user, organization_slug=kwargs["slug"])
        except NotFound:
            raise Http404("Organization not found.") from None
        self.organization = self.membership.organization
        self.actor = Actor.for_membership(self.membership)
        request.organization = self.organization
        request.membership = self.membership
        request.session[SESSION_ORGANIZATION_KEY] = self.organization.pk
        try:
            return super().dispatch(request, *args, **kwargs)
        except NotFound as missing:
            # A missing object and another organization's look the same: 404.
            raise Http404(missing.message) from None

    def form_errors_to_messages(self, request, form) -> None:
        """A form posted from another page (it redirects back): each error as a message, with its field's label."""
        for name, errors in form.errors.items():
            label = form.fields[name].label if name in form.fields else ""
            for error in errors:
                messages.error(request, f"{label}: {error}" if label else error)

    def attempt(self, request, action):
        """(result, None), or (None, error) with the refusal shown as a message.
        NotFound is not a refusal: it propagates and becomes the 404 above."""
        try:
            return action(), None
        except NotFound:
            raise
        except ApplicationError as error:
            messages.error(request, error.message)
            return None, error

    def render_page(self, request, template, context=None, status=200):
        base = {"organization": self.organization, "membership": self.membership, "section": self.section,
                "can_administer": self.membership.has_role(Role.ADMIN)}
        return render(request, template, {**base, **(context or {})}, status=status)

    def fail(self, request, error: ApplicationError):
        messages.error(request, error.message)
        return None


class SettingsView(OrganizationPageMixin, View):
    section = "settings"
    template = "dashboard/settings.html"

    def get(self, request, slug):
        return self.render_page(request, self.template, {"form": OrganizationForm(initial={"name": self.organization.name})})

    def post(self, request, slug):
        form = OrganizationForm(request.POST)
        updated, status = submit(form, lambda name: tenancy_services.organization_update(
            organization=self.organization, actor=self.actor, name=name))
        if updated is None:
            return self.render_page(request, self.template, {"form": form}, status=status)
        messages.success(request, "Saved.")
        return redirect("dashboard:settings", slug=self.organization.slug)


class MembersView(OrganizationPageMixin, View):
    section = "members"
    template = "dashboard/members.html"

    def context(self, invite_form=None):
        return {
            "memberships": tenancy_selectors.membership_list(organization=self.organization),
            "invitations": tenancy_selectors.invitation_list(organization=self.organization, pending_only=True),
            "invite_form": invite_form or InvitationForm(),
            "roles": Role.choices,
        }

    def get(self, request, slug):
        return self.render_page(request, self.template, self.context())

    def post(self, request, slug):
        """Send an invitation."""
        form = InvitationForm(request.POST)
        created, status = submit(form, lambda **data: tenancy_services.invitation_create(
            organization=self.organization, actor=self.actor, **data))
        if created is None:
            return self.render_page(request, self.template, self.context(invite_form=form), status=status)
        invitation, _token = created
        messages.success(request, f"Invitation sent to {invitation.email}.")
        return redirect("dashboard:members", slug=self.organization.slug)


class MemberRoleView(OrganizationPageMixin, View):
    def post(self, request, slug, membership_id):
        form = RoleForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Choose a valid role.")
            return redirect("dashboard:members", slug=slug)
        membership, error = self.attempt(request, lambda: tenancy_services.membership_change_role(
            organization=self.organization, actor=self.actor, membership_id=membership_id, role=form.cleaned_data["role"]))
        if error:
            return self.render_members_with_status(request, error.status_code)
        messages.success(request, f"{membership.user.email} is now {membership.get_role_display().lower()}.")
        return redirect("dashboard:members", slug=slug)

    def render_members_with_status(self, request, status):
        view = MembersView()
        view.organization, view.membership, view.actor = self.organization, self.membership, self.actor
        view.section = "members"
        return view.render_page(request, MembersView.template, view.context(), status=status)


class MemberRemoveView(MemberRoleView):
    """GET: the confirmation, naming the API keys that die with the membership; POST: remove."""

    section = "members"

    def get(self, request, slug, membership_id):
        target = tenancy_selectors.membership_get(organization=self.organization, membership_id=membership_id)
        return self.render_page(request, "dashboard/member_remove.html", {
            "target": target,
            "leaving_self": target.pk == self.membership.pk,
            "keys_to_revoke": tenancy_services.keys_acting_for(organization=self.organization, user=target.user),
        })

    def post(self, request, slug, membership_id):
        leaving_self = str(self.membership.pk) == str(membership_id)
        revoked, error = self.attempt(request, lambda: tenancy_services.membership_remove(
            organization=self.organization, actor=self.actor, membership_id=membership_id))
        if error:
            return self.render_members_with_status(request, error.status_code)
        keys_note = (f" Revoked {len(revoked)} API key{'s' if len(revoked) != 1 else ''} they created: "
                     + ", ".join(f"{key.name} ({key.display_prefix})" for key in revoked) + ".") if revoked else ""
        if leaving_self:
            request.session.pop(SESSION_ORGANIZATION_KEY, None)
            messages.success(request, f"You left {self.organization.name}.{keys_note}")
            return redirect("dashboard:home")
        messages.success(request, f"Member removed.{keys_note}")
        return redirect("dashboard:members", slug=slug)


class AuditLogView(OrganizationPageMixin, View):
    """Security-relevant actions, newest first: owners and admins only."""

    section = "audit-log"
    page_size = 100

    def get(self, request, slug):
        if not self.membership.has_role(Role.ADMIN):
            raise PermissionDenied("Only an organization admin or owner can read the audit log.")
        action = request.GET.get("action") or ""
        if action not in AuditAction.values:
            action = ""
        events = audit_selectors.audit_event_list(organization=self.organization, action=action or None)
        paginator = Paginator(events, self.page_size)
        page = paginator.get_page(request.GET.get("page"))
        return self.render_page(request, "dashboard/audit_log.html", {
            "page": page, "events": page.object_list, "actions": AuditAction.choices, "action": action,
        })


class InvitationRevokeView(MemberRoleView):
    def post(self, request, slug, invitation_id):
        _, error = self.attempt(request, lambda: tenancy_services.invitation_revoke(
            organization=self.organization, actor=self.actor, invitation_id=invitation_id))
        if error:
            return self.render_members_with_status(request, error.status_code)
        messages.success(request, "Invitation withdrawn.")
        return redirect("dashboard:members", slug=slug)


class ApiKeysView(OrganizationPageMixin, View):
    section = "api-keys"
    template = "dashboard/api_keys.html"
    # The full key crosses one redirect in the session, then is gone: a reload
    # neither shows it again nor re-submits the form (post/redirect/get).
    NEW_KEY_SESSION_KEY = "new_api_key_once"

    def context(self, form=None, new_key=None):
        return {
            # Like the API: the list of keys is for admins and owners.
            "api_keys": account_selectors.api_key_list(organization=self.organization)
            if self.membership.has_role(Role.ADMIN) else [],
            "form": form or ApiKeyForm(),
            "new_key": new_key,
        }

    def get(self, request, slug):
        new_key = request.session.pop(self.NEW_KEY_SESSION_KEY, None)
        if new_key and new_key.get("organization_id") != self.organization.pk:
            new_key = None
        return self.render_page(request, self.template, self.context(new_key=new_key))

    def post(self, request, slug):
        form = ApiKeyForm(request.POST)
        created, status = submit(form, lambda **data: account_services.api_key_create(
            organization=self.organization, actor=self.actor, **data))
        if created is None:
            return self.render_page(request, self.template, self.context(form=form), status=status)
        api_key, full_key = created
        request.session[self.NEW_KEY_SESSION_KEY] = {
            "organization_id": self.organization.pk, "name": api_key.name, "key": full_key,
        }
        return redirect("dashboard:api-keys", slug=self.organization.slug)


class ApiKeyRevokeView(OrganizationPageMixin, View):
    def post(self, request, slug, api_key_id):
        api_key, error = self.attempt(request, lambda: account_services.api_key_revoke(
            organization=self.organization, actor=self.actor, api_key_id=api_key_id))
        if error:
            return redirect("dashboard:api-keys", slug=slug)
        messages.success(request, f"Revoked {api_key.name}.")
        return redirect("dashboard:api-keys", slug=slug)


class InvitationAcceptView(View):
    """/invitations/<token>: shows the invitation, then joins on POST. Anonymous
    visitors are sent to log in or sign up with the token kept in the session."""

    template = "dashboard/invitation_accept.html"

    def _load(self, request, token):
        try:
            return tenancy_services.invitation_for_token(token=token), None
        except ApplicationError as error:
            return None, render(request, self.template, {"error": error}, status=error.status_code)

    def get(self, request, token):
        invitation, failure = self._load(request, token)
        if failure:
            return failure
        if not request.user.is_authenticated:
            request.session[PENDING_INVITATION_SESSION_KEY] = token
        return render(request, self.template, {"invitation": invitation, "token": token,
                                               "signup_url": reverse("signup") + f"?email={invitation.email}"})

    def post(self, request, token):
        if not request.user.is_authenticated:
            request.session[PENDING_INVITATION_SESSION_KEY] = token
            return redirect(f"{reverse('login')}?next={request.path}")
        try:
            membership = tenancy_services.invitation_accept(token=token, user=request.user)
        except ApplicationError as error:
            return render(request, self.template, {"error": error}, status=error.status_code)
        request.session.pop(PENDING_INVITATION_SESSION_KEY, None)
        request.session[SESSION_ORGANIZATION_KEY] = membership.organization_id
        messages.success(request, f"You joined {membership.organization.name} as {membership.get_role_display().lower()}.")
        return redirect("dashboard:overview", slug=membership.organization.slug)
