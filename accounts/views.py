"""The customer dashboard's account pages: sign-up, organisations, API keys, members, webhooks and billing.

Every page acts for the session's current tenant (``accounts.scoping``), never for a tenant named in the
URL or the form, so one organisation's rows cannot be reached from another's session: objects are looked
up inside the current tenant and anything else is a 404. ``DashboardMixin`` is shared with the jobs pages.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from django import forms as djforms
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View
from django.views.generic import FormView, TemplateView

from accounts import forms, services
from accounts.models import ApiKey, Membership
from accounts.scoping import SESSION_TENANT_KEY, membership_for_session

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


class ApiKeysView(DashboardMixin, TemplateView):
    """List the tenant's keys and create new ones. A new key's secret is in this one response only."""

    template_name = "dashboard/keys.html"
    manage_required = True
    nav = "keys"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.setdefault("form", forms.ApiKeyCreateForm())
        context["keys"] = ApiKey.objects.filter(tenant=self.tenant).select_related("created_by")
        return context

    def post(self, request: HttpRequest) -> HttpResponse:
        form = forms.ApiKeyCreateForm(request.POST)
        if not form.is_valid():
            return self.render_to_response(self.get_context_data(form=form), status=400)
        issued = services.issue_api_key(self.tenant, form.cleaned_data["name"], created_by=request.user)
        response = self.render_to_response(
            self.get_context_data(form=forms.ApiKeyCreateForm(), issued=issued), status=201
        )
        # Rendered, not redirected: the secret is never stored anywhere (not even in the session) and must
        # not be kept by a cache or the back button.
        response["Cache-Control"] = "no-store"
        return response


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
            editable = forms.can_change(self.membership, member)
            last_owner = member.role == Membership.Role.OWNER and owners == 1
            rows.append({
                "membership": member,
                "editable": editable,
                "removable": editable and not last_owner,
                "role_form": forms.MemberRoleForm(
                    initial={"role": member.role}, actor=self.membership, target=member
                ) if editable else None,
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
        membership, invited = form.save(request=request)
        who = membership.user.email or membership.user.get_username()
        if invited:
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
        form = forms.MemberRoleForm(request.POST, actor=self.membership, target=target)
        if form.is_valid():
            form.save()
            role = target.get_role_display().lower()
            messages.success(request, f"{target.user.get_username()} is now {role}.")
        else:
            messages.error(request, " ".join(form.non_field_errors()) or "That role cannot be granted.")
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
        form = forms.MemberRemoveForm(request.POST, actor=self.membership, target=target)
        if not form.is_valid():
            messages.error(request, " ".join(form.non_field_errors()))
            return redirect("dashboard:members")
        name = target.user.get_username()
        form.save()
        messages.success(request, f"{name} was removed.")
        if target.user_id == request.user.id:
            request.session.pop(SESSION_TENANT_KEY, None)
            return redirect("dashboard:overview")
        return redirect("dashboard:members")


# --- webhooks -----------------------------------------------------------------------------------------------

WEBHOOKS_GUIDE = Path(__file__).resolve().parent.parent / "jobs" / "WEBHOOKS.md"


@functools.cache
def verification_recipe() -> str:
    """The customer's verification function exactly as ``jobs/WEBHOOKS.md`` documents it (its Python block)."""
    try:
        found = re.search(r"```python\n(.*?)```", WEBHOOKS_GUIDE.read_text(encoding="utf-8"), re.S)
    except OSError:
        return ""
    return found.group(1).strip() if found else ""


def mask_secret(secret: str) -> str:
    """``whsec_••••••••abcd``: enough to tell two secrets apart, useless to sign with."""
    prefix, _, rest = secret.partition("_")
    return f"{prefix}_{'•' * 8}{rest[-4:]}" if rest else "•" * 8


class WebhookSettingsForm(djforms.Form):
    """The tenant's default callback URL; the SSRF check is ``jobs.webhooks.delivery``' (the same as a job's)."""

    url = djforms.CharField(
        label="Default callback URL", required=False, max_length=2000,
        widget=djforms.URLInput(attrs={"placeholder": "https://hooks.example.com/audioseal", "spellcheck": "false"}),
        help_text="Used for jobs submitted without their own <code>callback_url</code>. Must be http(s) and "
        "resolve only to public addresses. Leave empty to send no webhook for such jobs.",
    )


class WebhooksView(DashboardMixin, TemplateView):
    """The tenant's default callback URL and its webhook signing secret (owners and admins only)."""

    template_name = "dashboard/webhooks.html"
    manage_required = True
    nav = "webhooks"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.setdefault("form", WebhookSettingsForm(initial={"url": self.tenant.webhook_url}))
        context.update(
            webhook_url=self.tenant.webhook_url,
            secret=self.tenant.webhook_secret,
            masked_secret=mask_secret(self.tenant.webhook_secret),
            recipe=verification_recipe(),
        )
        return context

    def render_to_response(self, context: dict[str, Any], **kwargs: Any) -> HttpResponse:
        response = super().render_to_response(context, **kwargs)
        response["Cache-Control"] = "no-store"  # the page carries the signing secret
        return response

    def post(self, request: HttpRequest) -> HttpResponse:
        from core.errors import ServiceError
        from jobs.webhooks import endpoints as webhooks

        form = WebhookSettingsForm(request.POST)
        if not form.is_valid():
            return self.render_to_response(self.get_context_data(form=form), status=400)
        url = form.cleaned_data["url"]
        try:
            webhooks.set_default_callback_url(self.tenant, url)
        except ServiceError as exc:
            form.add_error("url", exc.message)
            return self.render_to_response(self.get_context_data(form=form), status=400)
        if url:
            messages.success(request, f"Job webhooks of {self.tenant.name} now go to {url} by default.")
        else:
            messages.success(request, "The default callback URL was removed.")
        return redirect("dashboard:webhooks")


class WebhookSecretRotateView(DashboardMixin, TemplateView):
    template_name = "dashboard/confirm.html"
    manage_required = True
    nav = "webhooks"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {
            **super().get_context_data(**kwargs),
            "title": "Rotate signing secret",
            "question": f"Rotate the webhook signing secret of {self.tenant.name}?",
            "consequence": "Webhooks are signed with the new secret at once: your receivers reject them until "
            "you deploy the new secret there. This cannot be undone.",
            "confirm_label": "Rotate secret",
            "cancel_url": reverse("dashboard:webhooks"),
        }

    def post(self, request: HttpRequest) -> HttpResponse:
        from jobs.webhooks import endpoints as webhooks

        webhooks.rotate_secret(self.tenant)
        messages.success(request, "The signing secret was rotated. Deploy the new secret to your receivers now.")
        return redirect("dashboard:webhooks")


# --- billing ------------------------------------------------------------------------------------------------

STRIPE_OFF = (
    "Online payments are not configured on this installation (no Stripe key), so plans cannot be bought or "
    "managed here yet. Usage is still recorded; contact us to change plan."
)


def stripe_enabled() -> bool:
    from billing import stripe_sync

    return stripe_sync.enabled()


class BillingView(DashboardMixin, TemplateView):
    """Plan, usage and the Stripe buttons (disabled, with the reason, when Stripe is not configured)."""

    template_name = "dashboard/billing.html"
    manage_required = True
    nav = "billing"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        from billing import services as billing

        context = super().get_context_data(**kwargs)
        summary = billing.usage_summary(self.tenant)
        minutes = summary["minutes"]
        enabled = stripe_enabled()
        current = summary["plan"]["code"]
        plans = []
        for plan in billing.public_plans():
            purchasable = bool(plan.stripe_price_id or plan.stripe_metered_price_id)
            plans.append({
                "plan": plan,
                "current": plan.code == current,
                "can_buy": enabled and purchasable and plan.code != current,
                "why_not": "" if purchasable else "Not sold online: contact us.",
            })
        history = list(reversed(billing.usage_history(self.tenant, periods=6)))
        context.update(
            summary=summary,
            minutes=minutes,
            limits=summary["limits"],
            plans=plans,
            stripe_enabled=enabled,
            stripe_off_reason=STRIPE_OFF,
            usage_chart={
                "used": minutes["used"], "reserved": minutes["reserved"], "included": minutes["included"]
            },
            history_chart={
                "labels": [row["period_start"].strftime("%b %Y") for row in history],
                "used": [round(row["used_minutes"], 2) for row in history],
            },
        )
        return context


class StripeRedirectMixin(DashboardMixin):
    """POST-only endpoints that send an owner or admin to one of Stripe's hosted pages."""

    http_method_names = ["post"]
    manage_required = True
    nav = "billing"

    def stripe_url(self, request: HttpRequest) -> str:
        raise NotImplementedError

    def post(self, request: HttpRequest) -> HttpResponse:
        from core.errors import ServiceError

        if not stripe_enabled():
            messages.error(request, STRIPE_OFF)
            return redirect("dashboard:billing")
        try:
            url = self.stripe_url(request)
        except ServiceError as exc:
            messages.error(request, f"{exc.message} ({exc.code})")
            return redirect("dashboard:billing")
        # Stripe's hosted page is on another origin, which redirect()'s local-URL helpers do not expect.
        return HttpResponseRedirect(url)


class BillingCheckoutView(StripeRedirectMixin, View):
    def stripe_url(self, request: HttpRequest) -> str:
        from billing import services as billing

        code = request.POST.get("plan", "")
        plan = next((p for p in billing.public_plans() if p.code == code), None)
        if plan is None:
            from core.errors import ServiceError

            raise ServiceError("PLAN_NOT_FOUND", "Choose one of the plans on this page.")
        back = request.build_absolute_uri(reverse("dashboard:billing"))
        return billing.checkout_url(
            self.tenant, plan, success_url=back + "?checkout=success", cancel_url=back
        )


class BillingPortalView(StripeRedirectMixin, View):
    def stripe_url(self, request: HttpRequest) -> str:
        from billing import services as billing

        back = request.build_absolute_uri(reverse("dashboard:billing"))
        return billing.portal_url(self.tenant, return_url=back)
