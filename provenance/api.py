"""The message registry under ``/api/v1/provenance/messages`` (list, create a given or the next free message,
retrieve by message) and the Content Credentials settings at ``/api/v1/provenance/settings``. Scoped to the
caller's tenant; another tenant's entry is a 404."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.scoping import tenant_for_request
from core.errors import ServiceError
from provenance import selectors, services
from provenance.serializers import (
    ProvenanceSettingsSerializer,
    RegisteredMessageCreate,
    RegisteredMessageOut,
    RegisteredMessagePage,
)

PAGE_SIZE = 100
AFTER_PARAM = OpenApiParameter(
    "after", {"type": "string", "pattern": "^[0-9A-Fa-f]{4}$"},
    description="Page on: the entries after this message (4 hex digits; anything else is 400 INVALID_MESSAGE).",
)


class MessageListCreateView(APIView):
    """Rate-limited as reads (GET) and the ``default`` family (POST), like every non-job endpoint. JSON bodies
    only: a form would flatten ``metadata`` (an object) into strings."""

    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="provenance_messages_list", responses=RegisteredMessagePage, parameters=[AFTER_PARAM],
        summary="Your message registry",
    )
    def get(self, request: Request) -> Response:
        entries = selectors.messages_for(tenant_for_request(request).pk)
        after = request.query_params.get("after")
        if after is not None:  # present but empty is refused like any non-message (the schema says so)
            entries = entries.filter(message__gt=services.normalise_message(after))
        page = list(entries[: PAGE_SIZE + 1])
        next_url = None
        if len(page) > PAGE_SIZE:
            page = page[:PAGE_SIZE]
            next_url = request.build_absolute_uri(f"{reverse('api:provenance-messages')}?after={page[-1].message}")
        return Response({"results": [selectors.entry_json(e) for e in page], "next": next_url})

    @extend_schema(
        request=RegisteredMessageCreate, responses={201: RegisteredMessageOut},
        summary="Register a message (given, or the next free one)",
        description="`MESSAGE_TAKEN` (409) when your registry already has that message.",
    )
    def post(self, request: Request) -> Response:
        serializer = RegisteredMessageCreate(data=request.data)
        if not serializer.is_valid():
            raise ServiceError("VALIDATION_ERROR", "The request is invalid.", {"fields": serializer.errors})
        data = serializer.validated_data
        message = (data.get("message") or "").strip()
        entry = services.register_message(
            tenant_for_request(request),
            message=None if message.lower() in ("", "auto") else message,
            label=data["label"],
            metadata=data.get("metadata"),
            user=request.user,
        )
        return Response(selectors.entry_json(entry), status=status.HTTP_201_CREATED)


class MessageDetailView(APIView):
    rate_family = "read"

    @extend_schema(
        operation_id="provenance_message_retrieve", responses=RegisteredMessageOut,
        summary="One message of your registry",
    )
    def get(self, request: Request, message: str) -> Response:
        return Response(selectors.entry_json(selectors.message_entry(tenant_for_request(request).pk, message)))


def _settings_json(profile) -> dict:
    return {name: getattr(profile, name) for name in ProvenanceSettingsSerializer().fields}


class ProvenanceSettingsView(APIView):
    """The tenant's Content Credentials settings (the declaration signed into each manifest, on/off)."""

    parser_classes = [JSONParser]

    @extend_schema(responses=ProvenanceSettingsSerializer, summary="Your Content Credentials settings")
    def get(self, request: Request) -> Response:
        return Response(_settings_json(selectors.profile_for(tenant_for_request(request).pk)))

    @extend_schema(request=ProvenanceSettingsSerializer, responses=ProvenanceSettingsSerializer,
                   summary="Change your Content Credentials settings")
    def patch(self, request: Request) -> Response:
        serializer = ProvenanceSettingsSerializer(data=request.data, partial=True)
        if not serializer.is_valid():
            raise ServiceError("VALIDATION_ERROR", "The request is invalid.", {"fields": serializer.errors})
        profile = services.update_profile(tenant_for_request(request), **serializer.validated_data)
        return Response(_settings_json(profile))
