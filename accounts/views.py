"""The customer dashboard's account pages: sign-up, organisations, API keys and members.

The webhook settings pages are jobs' (``jobs.dashboard.webhooks``) and the billing pages billing's
(``billing.dashboard``): accounts sits below both and imports neither; they build on ``DashboardMixin``.

Every page acts for the session's current tenant (``accounts.scoping``), never for a tenant named in the
URL or the form, so one organisation's rows cannot be reached from another's session: objects are looked
up inside the current tenant and anything else is a 404. ``DashboardMixin`` is shared with the jobs and billing pages.
"""

from __future__ import annotations

import time
from typing import Any

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View
from django.views.generic import FormView, TemplateView

from accounts import forms, services
from accounts.models import ApiKey, Membership
from accounts.scoping import SESSION_TENANT_KEY, membership_for_session
from core.errors import ServiceError

FORBIDDEN_MANAGE = "Only owners and admins of {tenant} can manage API keys, members, webhooks and billing."


def shell_context(request: HttpRequest, membership: Membership | None, nav: str = "") -> dict[str, Any]:
    """What the app shell (navigation, tenant switcher) needs on every signed-in page."""
    memberships = []
    if request.user.is_authenticated:
        memberships = list(
            Membership.objects.select_related("tenant").filter(user=request.user).order_by("tenant__name")
        )
    return {
        "membership": membership,
        "tenant": membership.tenant if membership else None,
        "memberships": memberships,
        "can_manage": bool(membership and membership.can_manage),
        "nav": nav,
    }


def forbidden(request: HttpRequest, membership: Membership, message: str) -> HttpResponse:
    context = {**shell_context(request, membership), "message": message}
    return render(request, "dashboard/forbidden.html", context, status=403)


class DashboardMixin(LoginRequiredMixin):
    """A signed-in page for the current tenant. ``manage_required`` pages are for owners and admins only.

    A signed-in user who belongs to no organisation (a staff account, a removed member) is sent to the
    welcome page to create one: the dashboard never shows another tenant's data to staff; the admin does.
    """

    manage_required = False
    nav = ""
    membership: Membership

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        membership = membership_for_session(request)
        if membership is None:
            return redirect("dashboard:welcome")
        self.membership = membership
        self.tenant = membership.tenant
        if self.manage_required and not membership.can_manage:
            return forbidden(request, membership, FORBIDDEN_MANAGE.format(tenant=membership.tenant.name))
        return super().dispatch(request, *args, **kwargs)

    def shell(self) -> dict[str, Any]:
        return shell_context(self.request, self.membership, self.nav)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs) if hasattr(super(), "get_context_data") else dict(kwargs)
        context.update(self.shell())
        return context


def safe_next(request: HttpRequest, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return default


# --- sign-up and organisations ------------------------------------------------------------------------------


class SignupView(FormView):
    template_name = "registration/signup.html"
    form_class = forms.SignupForm

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.user.is_authenticated:
            return redirect("dashboard:overview")
        return super().dispatch(request, *args, **kwargs)

    def form_valid(self, form: forms.SignupForm) -> HttpResponse:
        user, tenant = form.save()
        login(self.request, user, backend="django.contrib.auth.backends.ModelBackend")
        self.request.session[SESSION_TENANT_KEY] = str(tenant.pk)
        messages.success(self.request, f"Welcome to AudioSeal Studio! {tenant.name} is on the Free plan.")
        return redirect("dashboard:overview")


class InviteAcceptView(auth_views.PasswordResetConfirmView):
    """The link an invited member gets by email (``accounts.services.invite_member``): Django's password
    token, but the page says "Set your password" (they never had one) and, once it is set, signs them in
    to the organisation that invited them instead of sending them to the sign-in form."""

    template_name = "registration/invite_accept.html"
    post_reset_login = True
    post_reset_login_backend = "django.contrib.auth.backends.ModelBackend"
    success_url = reverse_lazy("dashboard:overview")

    def form_valid(self, form) -> HttpResponse:
        response = super().form_valid(form)
        membership = (
            Membership.objects.select_related("tenant").filter(user=form.user).order_by("-created_at").first()
        )
        if membership is not None:
            self.request.session[SESSION_TENANT_KEY] = str(membership.tenant_id)
            messages.success(self.request, f"Welcome to {membership.tenant.name} on AudioSeal Studio!")
        return response


class WelcomeView(LoginRequiredMixin, FormView):
    """For a signed-in user without an organisation: create one (staff also get a link to the admin)."""

    template_name = "dashboard/welcome.html"
    form_class = forms.OrganisationForm

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.user.is_authenticated and membership_for_session(request) is not None:
            return redirect("dashboard:overview")
        return super().dispatch(request, *args, **kwargs)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {**super().get_context_data(**kwargs), **shell_context(self.request, None)}

    def form_valid(self, form: forms.OrganisationForm) -> HttpResponse:
        tenant = form.save(self.request.user)
        self.request.session[SESSION_TENANT_KEY] = str(tenant.pk)
        messages.success(self.request, f"{tenant.name} is ready.")
        return redirect("dashboard:overview")


class SwitchTenantView(LoginRequiredMixin, View):
    """Make another of the user's organisations the current one (POST; membership checked)."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest) -> HttpResponse:
        form = forms.TenantSwitchForm(request.POST)
        if form.is_valid():
            wanted = form.cleaned_data["tenant"]
            membership = Membership.objects.filter(user=request.user, tenant_id=wanted).first()
            if membership is not None:
                request.session[SESSION_TENANT_KEY] = str(membership.tenant_id)
                messages.info(request, f"Switched to {membership.tenant.name}.")
                # The page we came from may show an object of the previous tenant: go to the overview.
                return redirect("dashboard:overview")
        messages.error(request, "You are not a member of that organisation.")
        return redirect(safe_next(request, reverse("dashboard:overview")))


# --- API keys -----------------------------------------------------------------------------------------------


NEW_KEY_SESSION_KEY = "dashboard:new_api_key"
NEW_KEY_SHOWN_FOR_SECONDS = 300  # a redirect followed later than this shows no secret (the key stays listed)


class ApiKeysView(DashboardMixin, TemplateView):
    """List the tenant's keys and create new ones: POST, redirect, GET. The new key's secret rides in the
    session from the POST to the one GET that shows it (it is popped there), so reloading that page neither
    creates another key nor shows the secret again, and the back button finds no page that holds it."""

    template_name = "dashboard/keys.html"
    manage_required = True
    nav = "keys"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        issued = request.session.pop(NEW_KEY_SESSION_KEY, None)
        if issued and issued.get("tenant") != str(self.tenant.pk):
            issued = None  # created for the organisation the user has since switched away from
        if issued and time.time() - float(issued.get("at", 0)) > NEW_KEY_SHOWN_FOR_SECONDS:
            issued = None
        response = self.render_to_response(self.get_context_data(issued=issued))
        if issued:
            response["Cache-Control"] = "no-store"  # the only page that ever holds the secret
        return response

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.setdefault("form", forms.ApiKeyCreateForm())
        keys = list(ApiKey.objects.filter(tenant=self.tenant).select_related("created_by"))
        for key in keys:  # "Watermark detect", not watermark_detect
            key.kind_labels = services.kind_labels(key.job_kinds)
        context["keys"] = keys
        return context

    def post(self, request: HttpRequest) -> HttpResponse:
        form = forms.ApiKeyCreateForm(request.POST)
        if not form.is_valid():
            return self.render_to_response(self.get_context_data(form=form), status=400)
        issued = services.issue_api_key(self.tenant, created_by=request.user, **form.key_options())
        request.session[NEW_KEY_SESSION_KEY] = {
            "tenant": str(self.tenant.pk), "name": issued.api_key.name, "secret": issued.secret,
            "at": time.time(),
        }
        return redirect("dashboard:keys", permanent=False)


class ApiKeyRevokeView(DashboardMixin, TemplateView):
    template_name = "dashboard/confirm.html"
    manage_required = True
    nav = "keys"

    def get_key(self) -> ApiKey:
        return get_object_or_404(ApiKey, pk=self.kwargs["pk"], tenant=self.tenant)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        key = self.get_key()
        return {
            **super().get_context_data(**kwargs),
            "title": "Revoke API key",
            "question": f"Revoke the key “{key.name}” ({key.prefix}…)?",
            "consequence": "Requests that use it will be refused at once with API_KEY_REVOKED. "
            "This cannot be undone.",
            "confirm_label": "Revoke key",
            "cancel_url": reverse("dashboard:keys"),
        }

    def post(self, request: HttpRequest, pk) -> HttpResponse:
        key = self.get_key()
        services.revoke_api_key(key)
        messages.success(request, f"The key “{key.name}” was revoked.")
        return redirect("dashboard:keys")


class ApiKeyEditView(DashboardMixin, TemplateView):
    """Rename a key, set or clear its expiry, change its scopes (``services.update_api_key``)."""

    template_name = "dashboard/key_edit.html"
    manage_required = True
    nav = "keys"

    def get_key(self) -> ApiKey:
        return get_object_or_404(ApiKey, pk=self.kwargs["pk"], tenant=self.tenant)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        key = context.setdefault("key", self.get_key())
        context.setdefault("form", forms.ApiKeyScopeForm(initial=forms.ApiKeyScopeForm.initial_for(key)))
        return context

    def post(self, request: HttpRequest, pk) -> HttpResponse:
        key = self.get_key()
        form = forms.ApiKeyScopeForm(request.POST)
        if form.is_valid():
            try:
                services.update_api_key(key, **form.key_options())
            except ServiceError as exc:
                field = exc.details.get("field")
                form.add_error(field if field in form.fields else None, exc.message)
            else:
                messages.success(request, f"The key “{key.name}” was saved.")
                return redirect("dashboard:keys")
        return self.render_to_response(self.get_context_data(key=key, form=form), status=400)


# --- members ------------------------------------------------------------------------------------------------


class MembersView(DashboardMixin, TemplateView):
    """Everyone sees who is in the organisation; owners and admins add people and change roles."""

    template_name = "dashboard/members.html"
    nav = "members"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        rows = []
        members = list(
            Membership.objects.filter(tenant=self.tenant).select_related("user").order_by("created_at")
        )
        owners = sum(1 for m in members if m.role == Membership.Role.OWNER)
        for member in members:
            editable = services.can_change(self.membership, member)
            rows.append({
                "membership": member,
                "editable": editable,
                "removable": services.can_remove(self.membership, member, owners=owners),
                "role_form": forms.MemberRoleForm(initial={"role": member.role}, actor=self.membership)
                if editable else None,
            })
        context["rows"] = rows
        if self.membership.can_manage:
            context.setdefault("form", forms.MemberAddForm(actor=self.membership))
        return context

    def post(self, request: HttpRequest) -> HttpResponse:
        if not self.membership.can_manage:
            return forbidden(request, self.membership, FORBIDDEN_MANAGE.format(tenant=self.tenant.name))
        form = forms.MemberAddForm(request.POST, actor=self.membership)
        if not form.is_valid():
            return self.render_to_response(self.get_context_data(form=form), status=400)
        try:
            added = services.add_member(self.membership, form.cleaned_data["email"], form.cleaned_data["role"])
        except ServiceError as exc:
            field = exc.details.get("field")
            form.add_error(field if field in form.fields else None, exc.message)
            return self.render_to_response(self.get_context_data(form=form), status=400)
        membership = added.membership
        who = membership.user.email or membership.user.get_username()
        if added.created_user:
            services.invite_member(
                membership, inviter=request.user, domain=request.get_host(), use_https=request.is_secure()
            )
            messages.success(request, f"{who} was invited: we emailed them a link to set their password.")
        else:
            messages.success(request, f"{who} was added as {membership.get_role_display().lower()}.")
        return redirect("dashboard:members")


class MemberTargetMixin(DashboardMixin):
    manage_required = True
    nav = "members"

    def get_target(self) -> Membership:
        members = Membership.objects.select_related("user")
        return get_object_or_404(members, pk=self.kwargs["pk"], tenant=self.tenant)


class MemberRoleView(MemberTargetMixin, View):
    http_method_names = ["post"]

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        target = self.get_target()
        form = forms.MemberRoleForm(request.POST, actor=self.membership)
        if not form.is_valid():
            messages.error(request, "That role cannot be granted.")
            return redirect("dashboard:members")
        try:
            services.change_role(self.membership, target, form.cleaned_data["role"])
        except ServiceError as exc:
            messages.error(request, exc.message)
            return redirect("dashboard:members")
        role = target.get_role_display().lower()
        messages.success(request, f"{target.user.get_username()} is now {role}.")
        return redirect("dashboard:members")


class MemberRemoveView(MemberTargetMixin, TemplateView):
    template_name = "dashboard/confirm.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        target = self.get_target()
        leaving = target.user_id == self.request.user.id
        return {
            **super().get_context_data(**kwargs),
            "title": "Leave organisation" if leaving else "Remove member",
            "question": f"Remove {target.user.get_username()} from {self.tenant.name}?",
            "consequence": "They lose access to its jobs and settings at once. Their API jobs keep running.",
            "confirm_label": "Leave" if leaving else "Remove member",
            "cancel_url": reverse("dashboard:members"),
        }

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        target = self.get_target()
        name = target.user.get_username()
        try:
            services.remove_member(self.membership, target)
        except ServiceError as exc:
            messages.error(request, exc.message)
            return redirect("dashboard:members")
        messages.success(request, f"{name} was removed.")
        if target.user_id == request.user.id:
            request.session.pop(SESSION_TENANT_KEY, None)
            return redirect("dashboard:overview")
        return redirect("dashboard:members")
