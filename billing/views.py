"""Billing HTTP endpoints: ``GET /api/v1/usage`` and the Stripe webhook. Thin: the work is in services."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.scoping import tenant_for_request
from billing import selectors, webhooks
from billing.serializers import UsageSerializer


class UsageView(APIView):
    rate_family = "read"

    @extend_schema(
        operation_id="get_usage",
        responses=UsageSerializer,
        summary="Usage in the current billing period",
        description="Minutes used, reserved by queued/running jobs and included (plan + grants), usage per "
        "job kind, the subscription state and the plan's limits.",
    )
    def get(self, request: Request) -> Response:
        return Response(UsageSerializer(selectors.usage_summary(tenant_for_request(request))).data)


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    """Stripe calls this; the signature is checked on the raw body (see ``billing.webhooks`` for statuses)."""
    status, body = webhooks.handle(request.body, request.headers.get("Stripe-Signature"))
    return JsonResponse(body, status=status)
