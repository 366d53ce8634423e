"""The dashboard's billing pages: plan, usage and the buttons to Stripe's hosted Checkout and Billing Portal.

They live in billing (not accounts) because accounts sits below billing and may not call it; the page
frame (``DashboardMixin``: sign-in, current tenant, owners and admins only) comes from accounts. The URLs
are mounted in the ``dashboard`` namespace with the accounts and jobs pages (``audioseal_site/urls.py``).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.urls import path, reverse
from django.views import View
from django.views.generic import TemplateView

from accounts.views import DashboardMixin
from billing import selectors, services, stripe_sync
from core.errors import ServiceError

STRIPE_OFF = (
    "Online payments are not configured on this installation (no Stripe key), so plans cannot be bought or "
    "managed here yet. Usage is still recorded; contact us to change plan."
)


class BillingView(DashboardMixin, TemplateView):
    """Plan, usage and the Stripe buttons (disabled, with the reason, when Stripe is not configured)."""

    template_name = "dashboard/billing.html"
    manage_required = True
    nav = "billing"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        summary = selectors.usage_summary(self.tenant)
        minutes = summary["minutes"]
        enabled = stripe_sync.enabled()
        current = summary["plan"]["code"]
        plans = []
        for plan in selectors.public_plans():
            purchasable = bool(plan.stripe_price_id or plan.stripe_metered_price_id)
            plans.append({
                "plan": plan,
                "current": plan.code == current,
                "can_buy": enabled and purchasable and plan.code != current,
                "why_not": "" if purchasable else "Not sold online: contact us.",
            })
        history = list(reversed(selectors.usage_history(self.tenant, periods=6)))
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
        if not stripe_sync.enabled():
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
        code = request.POST.get("plan", "")
        plan = next((p for p in selectors.public_plans() if p.code == code), None)
        if plan is None:
            raise ServiceError("PLAN_NOT_FOUND", "Choose one of the plans on this page.")
        back = request.build_absolute_uri(reverse("dashboard:billing"))
        return services.checkout_url(
            self.tenant, plan, success_url=back + "?checkout=success", cancel_url=back
        )


class BillingPortalView(StripeRedirectMixin, View):
    def stripe_url(self, request: HttpRequest) -> str:
        back = request.build_absolute_uri(reverse("dashboard:billing"))
        return services.portal_url(self.tenant, return_url=back)


# Mounted in the ``dashboard`` namespace (audioseal_site/urls.py); the names are the templates'.
urlpatterns = [
    path("billing/", BillingView.as_view(), name="billing"),
    path("billing/checkout/", BillingCheckoutView.as_view(), name="billing-checkout"),
    path("billing/portal/", BillingPortalView.as_view(), name="billing-portal"),
]
