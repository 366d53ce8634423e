from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from accounts import urls as accounts_urls
from audioseal_site import health, metrics, openapi  # noqa: F401 - openapi registers the API-key scheme
from billing import dashboard as billing_dashboard
from billing import views as billing_views
from jobs.dashboard import console as console_dashboard
from jobs.dashboard import views as jobs_dashboard
from jobs.dashboard import webhooks as webhooks_dashboard

api_v1 = ([path("", include("jobs.api.urls")), path("", include("billing.urls"))], "api")
# The customer dashboard: account, jobs, webhook settings and billing pages share one namespace, at the root.
dashboard = (
    [
        *accounts_urls.urlpatterns,
        *jobs_dashboard.urlpatterns,
        *webhooks_dashboard.urlpatterns,
        *billing_dashboard.urlpatterns,
        *console_dashboard.urlpatterns,
    ],
    "dashboard",
)

# Errors of /api/ paths that no DRF view rendered (unknown paths, crashes, DEBUG pages) become JSON in
# audioseal_site.middleware.ApiJsonErrorsMiddleware; other paths keep Django's pages.

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path(f"{settings.ADMIN_URL}django-rq/", include("django_rq.urls")),
    path(settings.ADMIN_URL, admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("billing/stripe/webhook", billing_views.stripe_webhook, name="stripe-webhook"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("", include(dashboard)),
]
