"""The dashboard's webhook pages: the endpoint (default URL, event-type filter, signing secret and its
rotation with overlap, a test event) and the delivery log (status, attempts, answers, resend).

Job webhooks are a jobs feature (``jobs.webhooks.delivery`` checks the URL and rotates the secret), so the
pages live here, on top of accounts' page frame (``DashboardMixin``); accounts sits below jobs and may not
call it. The URLs are mounted in the ``dashboard`` namespace (``audioseal_site/urls.py``).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import path
from django.views.generic import TemplateView

from accounts.views import DashboardMixin
from core.errors import ServiceError
from jobs.models import WebhookDelivery
from jobs.webhooks import endpoints as webhooks
from jobs.webhooks import outbox, selectors
from jobs.webhooks.events import EVENT_TYPES

WEBHOOKS_GUIDE = Path(__file__).resolve().parent.parent / "WEBHOOKS.md"


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


class WebhookSettingsForm(forms.Form):
    """The tenant's default callback URL; the SSRF check is ``jobs.webhooks.delivery``' (the same as a job's)."""

    url = forms.CharField(
        label="Default callback URL", required=False, max_length=2000,
        widget=forms.URLInput(attrs={"placeholder": "https://hooks.example.com/audioseal", "spellcheck": "false"}),
        help_text="Used for jobs submitted without their own <code>callback_url</code>. Must be http(s) and "
        "resolve only to public addresses. Leave empty to send no webhook for such jobs.",
    )


class EventTypesForm(forms.Form):
    """Which event types go to the default callback URL; none ticked = all of them."""

    event_types = forms.MultipleChoiceField(
        label="Events sent to the default URL", required=False, widget=forms.CheckboxSelectMultiple,
        choices=[(name, f"{name} — {description}") for name, description in EVENT_TYPES.items()],
        help_text="Tick none to receive every event. A job's own <code>callback_url</code> always receives "
        "that job's event.",
    )


OVERLAP_CHOICES = [
    ("0", "No overlap: the old secret stops at once"),
    ("3600", "1 hour"),
    ("86400", "24 hours"),
    ("604800", "7 days"),
]


class RotateForm(forms.Form):
    overlap_seconds = forms.TypedChoiceField(
        label="Keep the old secret valid for", choices=OVERLAP_CHOICES, coerce=int,
        help_text="During the overlap every webhook carries two signatures (new and old), so receivers keep "
        "verifying while you deploy the new secret.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["overlap_seconds"]
        default = str(settings.WEBHOOK_SECRET_OVERLAP_SECONDS)
        if default not in dict(OVERLAP_CHOICES):  # an operator's own default is always on offer
            field.choices = [*OVERLAP_CHOICES, (default, f"{int(default) / 3600:g} hours (default)")]
        field.initial = default


class WebhooksView(DashboardMixin, TemplateView):
    """The tenant's default callback URL and its webhook signing secret (owners and admins only)."""

    template_name = "dashboard/webhooks.html"
    manage_required = True
    nav = "webhooks"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.setdefault("form", WebhookSettingsForm(initial={"url": self.tenant.webhook_url}))
        context.setdefault("events_form", EventTypesForm(initial={"event_types": self.tenant.webhook_event_types}))
        previous_in_force = webhooks.previous_secret_in_force(self.tenant)
        context.update(
            webhook_url=self.tenant.webhook_url,
            event_types=self.tenant.webhook_event_types,
            secret=self.tenant.webhook_secret,
            masked_secret=mask_secret(self.tenant.webhook_secret),
            previous_secret_expires_at=self.tenant.webhook_previous_secret_expires_at if previous_in_force else None,
            masked_previous_secret=mask_secret(self.tenant.webhook_previous_secret) if previous_in_force else "",
            recent_deliveries=selectors.deliveries_of(self.tenant)[:5],
            recipe=verification_recipe(),
        )
        return context

    def render_to_response(self, context: dict[str, Any], **kwargs: Any) -> HttpResponse:
        response = super().render_to_response(context, **kwargs)
        response["Cache-Control"] = "no-store"  # the page carries the signing secret
        return response

    def post(self, request: HttpRequest) -> HttpResponse:
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


class WebhookEventTypesView(DashboardMixin, TemplateView):
    """POST: the endpoint's event-type filter (a form of the webhooks page)."""

    template_name = "dashboard/webhooks.html"
    manage_required = True
    nav = "webhooks"

    def get(self, request: HttpRequest) -> HttpResponse:
        return redirect("dashboard:webhooks")

    def post(self, request: HttpRequest) -> HttpResponse:
        form = EventTypesForm(request.POST)
        if not form.is_valid():  # only a hand-made request can name an unknown type
            return self.render_to_response(
                WebhooksView(request=request, membership=self.membership, tenant=self.tenant, nav=self.nav)
                .get_context_data(events_form=form), status=400,
            )
        chosen = webhooks.set_event_types(self.tenant, form.cleaned_data["event_types"])
        messages.success(
            request, f"The default URL now receives {', '.join(chosen)}." if chosen else
            "The default URL now receives every event type.",
        )
        return redirect("dashboard:webhooks")


class WebhookSecretRotateView(DashboardMixin, TemplateView):
    """Confirm, with the overlap to keep, then rotate the signing secret."""

    template_name = "dashboard/webhook_rotate.html"
    manage_required = True
    nav = "webhooks"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.setdefault("form", RotateForm())
        return context

    def post(self, request: HttpRequest) -> HttpResponse:
        default = str(settings.WEBHOOK_SECRET_OVERLAP_SECONDS)  # a bare POST (no choice made) takes the default
        form = RotateForm({"overlap_seconds": request.POST.get("overlap_seconds", default)})
        if not form.is_valid():
            return self.render_to_response(self.get_context_data(form=form), status=400)
        webhooks.rotate_secret(self.tenant, form.cleaned_data["overlap_seconds"])
        expires = self.tenant.webhook_previous_secret_expires_at
        if expires:
            messages.success(
                request, "The signing secret was rotated. Until "
                f"{expires:%Y-%m-%d %H:%M} UTC webhooks carry signatures of both the new and the old secret: "
                "deploy the new secret to your receivers before then.",
            )
        else:
            messages.success(request, "The signing secret was rotated. Deploy the new secret to your receivers now.")
        return redirect("dashboard:webhooks")


class WebhookTestEventView(DashboardMixin, TemplateView):
    """POST: send a ``webhook.test`` event to the default URL, then show its delivery."""

    template_name = "dashboard/webhooks.html"
    manage_required = True
    nav = "webhooks"

    def get(self, request: HttpRequest) -> HttpResponse:
        return redirect("dashboard:webhooks")

    def post(self, request: HttpRequest) -> HttpResponse:
        try:
            delivery = outbox.send_test_event(self.tenant)
        except ServiceError as exc:
            messages.error(request, exc.message)
            return redirect("dashboard:webhooks")
        messages.success(request, f"A test event is on its way to {delivery.url}.")
        return redirect("dashboard:webhook-delivery", pk=delivery.pk)


class WebhookDeliveriesView(DashboardMixin, TemplateView):
    """Every delivery of the tenant, newest first: status, attempts, last answer; filter by status/event."""

    template_name = "dashboard/webhook_deliveries.html"
    manage_required = True
    nav = "webhooks"
    page_size = 25

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        status = self.request.GET.get("status", "")
        status = status if status in WebhookDelivery.Status.values else ""
        event = self.request.GET.get("event", "")
        event = event if event in EVENT_TYPES or event == "webhook.test" else ""
        page = Paginator(selectors.deliveries_of(self.tenant, status, event), self.page_size).get_page(
            self.request.GET.get("page")
        )
        query = "&".join(f"{name}={value}" for name, value in (("status", status), ("event", event)) if value)
        context.update(
            page=page, deliveries=page.object_list, filters={"status": status, "event": event},
            filtered=bool(status or event), query_string=query,
            status_choices=WebhookDelivery.Status.choices, event_choices=[*EVENT_TYPES, "webhook.test"],
        )
        return context


class WebhookDeliveryView(DashboardMixin, TemplateView):
    """One delivery: the event, the exact body sent, each attempt (when, status code, answer, error), resend."""

    template_name = "dashboard/webhook_delivery.html"
    manage_required = True
    nav = "webhooks"

    def delivery(self) -> WebhookDelivery:
        try:
            return selectors.delivery_of(self.tenant, self.kwargs["pk"])
        except ServiceError:
            raise Http404("No such webhook delivery.") from None

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        delivery = self.delivery()
        context.update(
            delivery=delivery, attempts=selectors.attempts_of(delivery), body=selectors.readable_body(delivery),
            resends=delivery.resends.order_by("-created_at")[:20],
            same_event=selectors.deliveries_of(self.tenant).filter(event_id=delivery.event_id).count(),
        )
        return context


class WebhookDeliveryResendView(WebhookDeliveryView):
    """POST: send the delivery's event again (same webhook-id), then show the new delivery."""

    def get(self, request: HttpRequest, pk: Any) -> HttpResponse:
        return redirect("dashboard:webhook-delivery", pk=pk)

    def post(self, request: HttpRequest, pk: Any) -> HttpResponse:
        original = self.delivery()
        try:
            copy = outbox.resend(original)
        except ServiceError as exc:
            messages.error(request, exc.message)
            return redirect("dashboard:webhook-delivery", pk=original.pk)
        messages.success(request, f"The {original.event} event was sent again with the same webhook-id.")
        return redirect("dashboard:webhook-delivery", pk=copy.pk)


# Mounted in the ``dashboard`` namespace (audioseal_site/urls.py); the names are the templates'.
urlpatterns = [
    path("webhooks/", WebhooksView.as_view(), name="webhooks"),
    path("webhooks/events/", WebhookEventTypesView.as_view(), name="webhook-events"),
    path("webhooks/rotate-secret/", WebhookSecretRotateView.as_view(), name="webhook-secret-rotate"),
    path("webhooks/test/", WebhookTestEventView.as_view(), name="webhook-test"),
    path("webhooks/deliveries/", WebhookDeliveriesView.as_view(), name="webhook-deliveries"),
    path("webhooks/deliveries/<uuid:pk>/", WebhookDeliveryView.as_view(), name="webhook-delivery"),
    path("webhooks/deliveries/<uuid:pk>/resend/", WebhookDeliveryResendView.as_view(), name="webhook-delivery-resend"),
]
