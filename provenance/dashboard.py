"""The dashboard's provenance pages: the tenant's message registry and its Content Credentials settings.

Members may register messages (as embed does); only owners and admins change the settings that go into
every signed manifest. Verification needs the workers, so its page lives in ``jobs.dashboard.provenance``.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import path
from django.views.generic import TemplateView

from accounts.views import DashboardMixin
from core.errors import ServiceError
from provenance import selectors, services
from provenance.models import DIGITAL_SOURCE_TYPES

MAX_SHOWN = 500


class RegisterMessageForm(forms.Form):
    message = forms.CharField(
        required=False, max_length=4, label="Message",
        widget=forms.TextInput(attrs={"placeholder": "auto", "spellcheck": "false", "autocomplete": "off"}),
        help_text="4 hex digits, or empty for the next free one.",
    )
    label = forms.CharField(max_length=200, label="Label", help_text="What it means: a campaign, a voice, a user.")
    metadata = forms.CharField(
        required=False, label="Metadata (JSON object)", widget=forms.Textarea(attrs={"rows": 3}),
        help_text='e.g. <code>{"voice": "nova", "end_user": "u-42"}</code>',
    )

    def clean_metadata(self) -> dict[str, Any]:
        raw = (self.cleaned_data.get("metadata") or "").strip()
        if not raw:
            return {}
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise forms.ValidationError("Not valid JSON.") from exc
        if not isinstance(value, dict):
            raise forms.ValidationError("Must be a JSON object ({…}).")
        return value


class ProvenanceSettingsForm(forms.Form):
    manifests_enabled = forms.BooleanField(required=False, label="Sign watermarked outputs (C2PA)")
    generator_name = forms.CharField(required=False, max_length=200, label="Generator",
                                     help_text="The product that made the audio, e.g. your TTS engine.")
    generator_version = forms.CharField(required=False, max_length=50, label="Generator version")
    digital_source_type = forms.ChoiceField(required=False, choices=DIGITAL_SOURCE_TYPES, label="Source")
    statement = forms.CharField(required=False, max_length=500, label="Statement")


class RegistryView(DashboardMixin, TemplateView):
    """The registry (newest messages by value) with a form to register one, and the signing settings."""

    template_name = "dashboard/provenance.html"
    nav = "provenance"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        profile = selectors.profile_for(self.tenant.pk)
        context.setdefault("form", RegisterMessageForm())
        context.setdefault("settings_form", ProvenanceSettingsForm(initial={
            "manifests_enabled": profile.manifests_enabled, "generator_name": profile.generator_name,
            "generator_version": profile.generator_version, "digital_source_type": profile.digital_source_type,
            "statement": profile.statement,
        }))
        entries = selectors.messages_for(self.tenant.pk)
        rows = [
            {"entry": e, "metadata_json": json.dumps(e.metadata, ensure_ascii=False) if e.metadata else ""}
            for e in entries[:MAX_SHOWN]
        ]
        context.update(rows=rows, entry_count=entries.count(), profile=profile)
        return context

    def post(self, request: HttpRequest) -> HttpResponse:
        form = RegisterMessageForm(request.POST)
        if not form.is_valid():
            return self.render_to_response(self.get_context_data(form=form), status=400)
        data = form.cleaned_data
        try:
            entry = services.register_message(
                self.tenant, message=(data["message"] or "").strip() or None, label=data["label"],
                metadata=data["metadata"], user=request.user,
            )
        except ServiceError as exc:
            form.add_error("message" if exc.code in ("INVALID_MESSAGE", "MESSAGE_TAKEN") else None, exc.message)
            return self.render_to_response(self.get_context_data(form=form), status=400)
        messages.success(request, f"Message {entry.message} is registered as “{entry.label}”.")
        return redirect("dashboard:provenance")


class ProvenanceSettingsView(DashboardMixin, TemplateView):
    """Saves the Content Credentials settings (owners and admins); the page is the registry's."""

    template_name = "dashboard/provenance.html"
    manage_required = True
    nav = "provenance"

    def get(self, request: HttpRequest) -> HttpResponse:
        return redirect("dashboard:provenance")

    def post(self, request: HttpRequest) -> HttpResponse:
        form = ProvenanceSettingsForm(request.POST)
        if not form.is_valid():
            messages.error(request, "The settings were not saved: " + "; ".join(
                f"{name}: {' '.join(errors)}" for name, errors in form.errors.items()
            ))
            return redirect("dashboard:provenance")
        services.update_profile(self.tenant, **form.cleaned_data)
        state = "on" if form.cleaned_data["manifests_enabled"] else "off"
        messages.success(request, f"Content Credentials are {state} for {self.tenant.name}.")
        return redirect("dashboard:provenance")


# Mounted in the ``dashboard`` namespace (audioseal_site/urls.py).
urlpatterns = [
    path("provenance/", RegistryView.as_view(), name="provenance"),
    path("provenance/settings/", ProvenanceSettingsView.as_view(), name="provenance-settings"),
]
