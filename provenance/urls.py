"""Registry endpoints under ``/api/v1/provenance/`` (mounted by the root urls; verify lives in jobs)."""

from django.urls import path

from provenance import api

urlpatterns = [
    path("provenance/messages", api.MessageListCreateView.as_view(), name="provenance-messages"),
    path("provenance/messages/<str:message>", api.MessageDetailView.as_view(), name="provenance-message"),
    path("provenance/settings", api.ProvenanceSettingsView.as_view(), name="provenance-settings"),
]
