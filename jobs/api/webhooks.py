"""The webhook endpoint and deliveries API: settings, secret rotation, test event, delivery log, resend.

One view per operation; each validates with its input serializer, calls ``jobs.webhooks`` (the writes) or
its selectors (the reads), and answers with its output serializer. With a session (the dashboard), only
owners and admins may change the endpoint, as on the dashboard's webhook page; an API key acts for its
tenant. Everything is scoped to the request's tenant: another tenant's delivery is a 404.
"""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ApiKey, Tenant
from accounts.permissions import IsTenantMember, KeyScope
from accounts.scoping import membership_for_session, tenant_for_request
from core.errors import ServiceError
from jobs.api.serializers import CALLBACK_URL_PATTERN, CallbackUrlField, WebhookDeliverySerializer
from jobs.api.views import JobCursorPagination
from jobs.models import WebhookDelivery
from jobs.webhooks import endpoints, outbox, selectors
from jobs.webhooks.events import EVENT_TYPES

TAG = ["webhooks"]


class CanManageWebhooks(BasePermission):
    """API keys act for their tenant; a dashboard session must be an owner's or an admin's."""

    message = "Only owners and admins of the organisation manage its webhooks."

    def has_permission(self, request, view) -> bool:
        if isinstance(getattr(request, "auth", None), ApiKey):
            return True
        membership = membership_for_session(request)
        return membership is not None and membership.can_manage


def _tenant(request: Request) -> Tenant:
    tenant = tenant_for_request(request)
    assert tenant is not None  # IsTenantMember (the default permission) ran first
    return tenant


# --- shapes ----------------------------------------------------------------------------------------------


class EndpointOutput(serializers.Serializer):
    url = serializers.CharField(source="webhook_url", help_text="Default callback URL; empty = none.")
    event_types = serializers.ListField(
        source="webhook_event_types", child=serializers.ChoiceField(choices=list(EVENT_TYPES)),
        help_text="Event types sent to the default URL; empty = all.",
    )
    available_event_types = serializers.SerializerMethodField()
    previous_secret_expires_at = serializers.SerializerMethodField(
        help_text="While set, deliveries are signed with the new and the previous secret (rotation overlap)."
    )

    def get_available_event_types(self, tenant: Tenant) -> list[str]:
        return list(EVENT_TYPES)

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_previous_secret_expires_at(self, tenant: Tenant) -> str | None:
        if not endpoints.previous_secret_in_force(tenant):
            return None
        return serializers.DateTimeField().to_representation(tenant.webhook_previous_secret_expires_at)


@extend_schema_field({
    "type": "string", "format": "uri", "maxLength": 2000, "pattern": CALLBACK_URL_PATTERN,
    "description": "An http(s) URL whose host resolves to public addresses only (else 400 "
    "INVALID_CALLBACK_URL); empty = none.",
})
class WebhookUrlField(CallbackUrlField):
    """The same rule as a job's ``callback_url`` (one SSRF guard in the services), described for webhooks."""


class EndpointUpdateInput(serializers.Serializer):
    url = WebhookUrlField()
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=list(EVENT_TYPES)), required=False, max_length=len(EVENT_TYPES) * 2
    )


class RotateInput(serializers.Serializer):
    overlap_seconds = serializers.IntegerField(
        required=False, min_value=0, max_value=settings.WEBHOOK_SECRET_OVERLAP_MAX_SECONDS,
        help_text=f"How long the old secret keeps signing (default {settings.WEBHOOK_SECRET_OVERLAP_SECONDS}); "
        "0 retires it at once.",
    )


class RotateOutput(serializers.Serializer):
    secret = serializers.CharField(help_text="The new whsec_… secret: deploy it to your receivers.")
    previous_secret_expires_at = serializers.DateTimeField(allow_null=True)


class TestEventInput(serializers.Serializer):
    url = WebhookUrlField(help_text="Default: the default callback URL.")


# --- endpoint ----------------------------------------------------------------------------------------------


class WebhookEndpointView(APIView):
    rate_family = "read"
    parser_classes = [JSONParser]  # JSON bodies only: a form is a 415, never silently read as empty
    permission_classes = [IsTenantMember, KeyScope, CanManageWebhooks]

    @extend_schema(tags=TAG, responses=EndpointOutput, summary="The webhook endpoint: default URL and filter")
    def get(self, request: Request) -> Response:
        return Response(EndpointOutput(_tenant(request)).data)

    @extend_schema(
        tags=TAG, request=EndpointUpdateInput, responses=EndpointOutput,
        summary="Change the default URL and/or the event-type filter",
    )
    def patch(self, request: Request) -> Response:
        data = EndpointUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        tenant = _tenant(request)
        if "url" in data.validated_data:
            endpoints.set_default_callback_url(tenant, data.validated_data["url"].strip())
        if "event_types" in data.validated_data:
            endpoints.set_event_types(tenant, data.validated_data["event_types"])
        return Response(EndpointOutput(tenant).data)


class WebhookSecretRotateView(APIView):
    rate_family = "read"
    parser_classes = [JSONParser]  # JSON bodies only: a form is a 415, never silently read as empty
    permission_classes = [IsTenantMember, KeyScope, CanManageWebhooks]

    @extend_schema(
        tags=TAG, request=RotateInput, responses=RotateOutput,
        summary="Rotate the signing secret; the old one keeps signing for the overlap",
    )
    def post(self, request: Request) -> Response:
        data = RotateInput(data=request.data)
        data.is_valid(raise_exception=True)
        tenant = _tenant(request)
        secret = endpoints.rotate_secret(tenant, data.validated_data.get("overlap_seconds"))
        expires = tenant.webhook_previous_secret_expires_at
        return Response(RotateOutput({"secret": secret, "previous_secret_expires_at": expires}).data)


class WebhookTestEventView(APIView):
    rate_family = "read"
    parser_classes = [JSONParser]  # JSON bodies only: a form is a 415, never silently read as empty
    permission_classes = [IsTenantMember, KeyScope, CanManageWebhooks]

    @extend_schema(
        tags=TAG, request=TestEventInput, responses={202: WebhookDeliverySerializer},
        summary="Send a webhook.test event (signed and delivered like any event)",
    )
    def post(self, request: Request) -> Response:
        data = TestEventInput(data=request.data)
        data.is_valid(raise_exception=True)
        delivery = outbox.send_test_event(_tenant(request), data.validated_data.get("url", "").strip())
        return Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


# --- deliveries --------------------------------------------------------------------------------------------


@extend_schema(
    tags=TAG,
    parameters=[
        OpenApiParameter("status", OpenApiTypes.STR, enum=WebhookDelivery.Status.values),
        OpenApiParameter("event", OpenApiTypes.STR),
    ],
    summary="The organisation's webhook deliveries, newest first",
)
class WebhookDeliveryListView(generics.ListAPIView):
    rate_family = "read"
    serializer_class = WebhookDeliverySerializer
    pagination_class = JobCursorPagination

    def get_queryset(self):
        wanted = self.request.query_params.get("status", "")
        if wanted and wanted not in WebhookDelivery.Status.values:
            raise ServiceError(
                "VALIDATION_ERROR", f"Unknown status {wanted!r}.",
                {"fields": {"status": WebhookDelivery.Status.values}},
            )
        return selectors.deliveries_of(_tenant(self.request), wanted, self.request.query_params.get("event", ""))


class WebhookDeliveryDetailView(APIView):
    rate_family = "read"

    @extend_schema(tags=TAG, responses=WebhookDeliverySerializer, summary="One webhook delivery and its attempts")
    def get(self, request: Request, pk) -> Response:
        return Response(WebhookDeliverySerializer(selectors.delivery_of(_tenant(request), pk)).data)


class WebhookDeliveryResendView(APIView):
    rate_family = "read"
    permission_classes = [IsTenantMember, KeyScope, CanManageWebhooks]

    @extend_schema(
        tags=TAG, request=None, responses={202: WebhookDeliverySerializer},
        summary="Send the event again (a new delivery with the same webhook-id)",
    )
    def post(self, request: Request, pk) -> Response:
        delivery = outbox.resend(selectors.delivery_of(_tenant(request), pk))
        return Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
