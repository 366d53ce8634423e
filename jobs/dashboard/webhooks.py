"""The dashboard's webhook settings: the tenant's default callback URL and its signing secret.

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
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import path, reverse
from django.views.generic import TemplateView

from accounts.views import DashboardMixin
from core.errors import ServiceError
from jobs.webhooks import endpoints as webhooks

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
        webhooks.rotate_secret(self.tenant)
        messages.success(request, "The signing secret was rotated. Deploy the new secret to your receivers now.")
        return redirect("dashboard:webhooks")


# Mounted in the ``dashboard`` namespace (audioseal_site/urls.py); the names are the templates'.
urlpatterns = [
    path("webhooks/", WebhooksView.as_view(), name="webhooks"),
    path("webhooks/rotate-secret/", WebhookSecretRotateView.as_view(), name="webhook-secret-rotate"),
]
