"""The batches API: create one batch of many inputs, read it (counts and items), list, cancel.

Views validate the request's form, build ``jobs.batches.BatchRequest`` and serialise; the rules (per-item
refusals, quota per item, one webhook) are ``jobs.batches``'.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework import serializers as drf_serializers
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import check_may_create
from accounts.scoping import tenant_for_request
from billing.ratelimit import standing_for_request
from core.errors import ServiceError
from jobs import batch_selectors, batches, idempotency, model_versions
from jobs.api import schema, serializers
from jobs.api.views import (
    EmotionAnalyzeView,
    JobCreateView,
    JobCursorPagination,
    WatermarkDetectView,
    WatermarkEmbedView,
)
from jobs.models import JobKind

# Per batchable kind: the single-job view whose option rules it shares, and the serializer of those options.
KIND_OPTIONS: dict[str, tuple[type[JobCreateView], type[drf_serializers.Serializer]]] = {
    JobKind.WATERMARK_EMBED: (WatermarkEmbedView, serializers.WatermarkEmbedOptions),
    JobKind.WATERMARK_DETECT: (WatermarkDetectView, serializers.WatermarkDetectOptions),
    JobKind.EMOTION: (EmotionAnalyzeView, serializers.EmotionOptions),
}
SHARED_OPTION_NAMES = ("message", "output_format", "granularity", "extract_embedding")


def _invalid(message: str, fields: dict[str, Any]) -> ServiceError:
    return ServiceError("VALIDATION_ERROR", message, {"fields": fields})


def _item_overrides(raw: Any, count: int) -> list[dict[str, Any]]:
    """``item_params``: absent, or a JSON array with one object per item."""
    if raw in (None, ""):
        return [{} for _ in range(count)]
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise _invalid("`item_params` is not valid JSON.", {"item_params": ["invalid JSON"]}) from exc
    if not isinstance(raw, list) or len(raw) != count or not all(isinstance(entry, dict) for entry in raw):
        raise _invalid(
            f"`item_params` must be a JSON array of {count} objects, one per item in order.",
            {"item_params": [f"expected {count} objects"]},
        )
    return raw


def _fingerprint(kind: str, request: Request) -> str:
    """``idempotency.fingerprint`` over every part: all the files, in order, not just the last of each name."""
    data = request.data
    files = {f"file[{i}]": upload for i, upload in enumerate(request.FILES.getlist("file"))}
    fields = {name: data.getlist(name) for name in data.keys() if name != "file"}
    return idempotency.fingerprint(kind, fields, files)


class BatchCreateView(APIView):
    parser_classes = [MultiPartParser]
    rate_family = "default"

    def _check_content_length(self, request: Request) -> None:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return
        limit = settings.MAX_UPLOAD_BYTES * batches.max_items() + 1024 * 1024
        if length > limit:
            raise ServiceError(
                "FILE_TOO_LARGE", f"The request is {length} bytes; a batch may carry at most {limit} bytes.",
                {"size_bytes": length, "limit_bytes": limit},
            )

    @schema.batch_creation()
    def post(self, request: Request) -> Response:
        self._check_content_length(request)
        key = idempotency.key_from_request(request)
        form = serializers.BatchCreateRequest(data=request.data)
        if not form.is_valid():
            raise _invalid("The request is invalid.", form.errors)
        data = form.validated_data
        kind = data["kind"]
        check_may_create(request.auth, kind)  # the kind is in the body: KeyScope cannot see it
        view_class, options_serializer = KIND_OPTIONS[kind]
        raw_items: list[dict[str, Any]] = (
            [{"file": upload} for upload in data.get("file", [])]
            + [{"file_url": url.strip()} for url in data.get("file_url", [])]
            + [{"upload_id": upload_id} for upload_id in data.get("upload_id", [])]
        )
        batches.check_shape(kind, len(raw_items))
        overrides = _item_overrides(request.data.get("item_params"), len(raw_items))
        shared = {name: request.data[name] for name in SHARED_OPTION_NAMES if name in request.data}
        pin = model_versions.resolve(kind, data.get("model_version"))
        view = view_class()
        items = []
        for index, (source, override) in enumerate(zip(raw_items, overrides, strict=True)):
            options = options_serializer(data={**shared, **override})
            if not options.is_valid():
                raise _invalid(f"The options of item {index} are invalid.", {"item_params": {index: options.errors}})
            try:
                params = view.params_from(options.validated_data)
            except ServiceError as exc:
                exc.details.setdefault("index", index)
                raise
            if pin:
                params[model_versions.PARAM] = pin
            items.append(batches.BatchItem(
                index=index, params=params, prepare=view.prepare_for(request, options.validated_data), **source
            ))
        batch, replayed = batches.submit_batch(batches.BatchRequest(
            tenant=tenant_for_request(request), kind=kind, items=items,
            params={name: shared[name] for name in shared} | ({"model_version": pin} if pin else {}),
            api_key=request.auth if request.auth is not None else None, user=request.user,
            callback_url=(data.get("callback_url") or "").strip(), idempotency_key=key,
            request_fingerprint=_fingerprint(kind, request) if key else "",
            standing=standing_for_request(request),
        ))
        response = Response(
            serializers.BatchSerializer(batch, context={"request": request}).data, status=status.HTTP_202_ACCEPTED
        )
        if replayed:
            response[idempotency.REPLAYED_HEADER] = "true"
        return response


class BatchPagination(JobCursorPagination):
    """Newest first, like the jobs listing (same cursor and ``page_size`` rules)."""


class BatchCollectionView(BatchCreateView, generics.ListAPIView):
    """``/api/v1/batches``: POST creates (``BatchCreateView``), GET lists newest first (counts only; read one
    batch for its items)."""

    serializer_class = serializers.BatchSerializer
    pagination_class = BatchPagination

    @property
    def rate_family(self) -> str:
        return "read" if self.request.method in ("GET", "HEAD") else "default"

    def get_queryset(self):
        return batch_selectors.batches_for(tenant_for_request(self.request))

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "with_items": False}

    @extend_schema(
        operation_id="list_batches",
        responses={200: serializers.BatchSerializer(many=True),
                   **schema.errors(_400="VALIDATION_ERROR, INVALID_CURSOR")},
        summary="List batches, newest first (counts only; read one batch for its items)",
        description="The tenant's batches, newest first, a page at a time: pass `next_cursor` back as `cursor` "
        "for the next page. `items` is empty here; read one batch for them.",
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class BatchDetailView(APIView):
    rate_family = "read"

    @extend_schema(
        operation_id="read_batch", responses={200: serializers.BatchSerializer, **schema.errors(404)},
        summary="Read a batch: counts by status and its items",
    )
    def get(self, request: Request, pk) -> Response:
        batch = generics.get_object_or_404(batch_selectors.batches_for(tenant_for_request(request)), pk=pk)
        return Response(serializers.BatchSerializer(batch, context={"request": request}).data)


class BatchCancelView(APIView):
    rate_family = "read"

    @extend_schema(
        request=None, operation_id="cancel_batch", responses={200: serializers.BatchSerializer, **schema.errors(404)},
        summary="Cancel a batch's queued and running items (final items stay as they are)",
    )
    def post(self, request: Request, pk) -> Response:
        batch = generics.get_object_or_404(batch_selectors.batches_for(tenant_for_request(request)), pk=pk)
        batches.cancel(batch)
        batch.refresh_from_db()
        return Response(serializers.BatchSerializer(batch, context={"request": request}).data)
