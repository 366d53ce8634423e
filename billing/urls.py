"""Billing endpoints under ``/api/v1/`` (mounted by the root urls next to the jobs API)."""

from django.urls import path

from billing import views

urlpatterns = [
    path("usage", views.UsageView.as_view(), name="usage"),
]
