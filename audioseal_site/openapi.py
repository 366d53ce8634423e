"""OpenAPI schema additions: the API-key security scheme, what every operation shares, and the links.

Without an extension drf-spectacular cannot describe ``ApiKeyAuthentication`` (``check --deploy`` warns and
the schema has no security requirement), and without documented error responses every 4xx the API
answers is "undocumented" to a client generator or a contract tester (schemathesis). What views document
themselves (their bodies, parameters, errors and examples) is in their ``extend_schema``; what every operation
under ``/api/`` shares because middleware or authentication does it (401, 429, the request-id and rate-limit
headers, the ``default`` error) is added here, as are the OpenAPI links between operations and the live list
of model versions a request may pin.

Imported by ``audioseal_site.urls`` so the extension is registered before any schema is generated.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key of your organisation: `Authorization: Bearer <api key>`.",
        }


ERROR_REF = {"$ref": "#/components/schemas/Error"}  # jobs.api.serializers.ErrorSerializer

# Headers the middleware sets on API responses (audioseal_site.middleware, billing.ratelimit).
REQUEST_ID_HEADER = {
    "schema": {"type": "string"},
    "description": "This request's id (the caller's `X-Request-ID` when sane): quote it to support.",
}
RATE_LIMIT_HEADERS = {
    "X-RateLimit-Limit": {
        "schema": {"type": "integer", "minimum": 0}, "description": "Requests per window for this key and family."
    },
    "X-RateLimit-Remaining": {
        "schema": {"type": "integer", "minimum": 0}, "description": "Requests left in the current window."
    },
    "X-RateLimit-Reset": {
        "schema": {"type": "integer", "minimum": 0}, "description": "Seconds until the window resets."
    },
}
RETRY_AFTER_HEADER = {
    "required": True, "schema": {"type": "integer", "minimum": 0}, "description": "Seconds to wait before retrying.",
}
ALWAYS = {
    401: "UNAUTHENTICATED, INVALID_API_KEY, API_KEY_REVOKED, API_KEY_EXPIRED",
    429: "RATE_LIMITED, CONCURRENCY_LIMIT or TOO_MANY_WAITS; retry after `Retry-After` seconds",
}
# Writes (POST, PUT, PATCH, DELETE) are also refused by the API key's scopes (accounts.permissions.KeyScope).
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
WRITES = {403: "KEY_SCOPE: the API key is read-only, or may not create this kind of job"}

# OpenAPI links (schemathesis' stateful tests follow them; clients read them as documentation): from a job in
# a response to the operations on that job, and from a page of jobs to the next page.
CREATING = ("watermark_embed", "watermark_detect", "watermark_report", "emotion_analyze", "beatsync_align")  # op ids
JOB_LINKS = {
    "ReadJob": "read_job", "CancelJob": "cancel_job", "DownloadOutput": "download_output",
    "DownloadInput": "download_input", "ListDeliveries": "list_deliveries",
}
BATCH_LINKS = {"ReadBatch": "read_batch", "CancelBatch": "cancel_batch"}
# The job kind each creating operation runs (its `model_version` must be one of that kind's versions).
KIND_OF_OPERATION = {
    "watermark_embed": "watermark_embed", "watermark_detect": "watermark_detect", "emotion_analyze": "emotion",
    "beatsync_align": "beatsync", "watermark_report": "watermark_report",
}
BATCHABLE_KINDS = ("watermark_embed", "watermark_detect", "emotion")


def add_shared_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: what every API operation shares because middleware or
    authentication does it, not the view: 401 and 429 errors (and 403 KEY_SCOPE on writes), the request id
    and rate-limit headers, the error shape as the ``default`` response, and the live ``?wait`` maximum."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    assert "Error" in components, "the jobs API's ErrorSerializer defines the Error component"
    result["components"]["headers"] = {
        "X-Request-ID": {**REQUEST_ID_HEADER, "required": True}, **RATE_LIMIT_HEADERS,
        "Retry-After": RETRY_AFTER_HEADER,
    }
    for path, operations in result.get("paths", {}).items():
        if not path.startswith("/api/"):
            continue
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            shared = {**ALWAYS, **(WRITES if method.upper() in UNSAFE_METHODS else {})}
            for status, description in shared.items():
                responses.setdefault(
                    str(status), {"description": description, "content": {"application/json": {"schema": ERROR_REF}}}
                )
            responses.setdefault(
                "default",
                {"description": "An error: see `error.code`.", "content": {"application/json": {"schema": ERROR_REF}}},
            )
            responses["429"].setdefault("headers", {})["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}
            for response in responses.values():
                response.setdefault("headers", {}).update(
                    {name: {"$ref": f"#/components/headers/{name}"} for name in ("X-Request-ID", *RATE_LIMIT_HEADERS)}
                )
            for parameter in operation.get("parameters", []):  # the setting now, not at import (tests lower it)
                if parameter.get("in") == "query" and parameter.get("name") == "wait":
                    parameter["schema"]["maximum"] = settings.MAX_WAIT_SECONDS
    return result


def add_links(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: the OpenAPI links between operations (see ``JOB_LINKS``)."""
    operations = [op for ops in result.get("paths", {}).values() for op in ops.values() if isinstance(op, dict)]
    ids = {operation.get("operationId") for operation in operations}
    job_links = {
        name: {"operationId": op_id, "parameters": {"id": "$response.body#/id"}}
        for name, op_id in JOB_LINKS.items() if op_id in ids
    }
    batch_links = {
        name: {"operationId": op_id, "parameters": {"id": "$response.body#/id"}}
        for name, op_id in BATCH_LINKS.items() if op_id in ids
    }
    for operation in operations:
        op_id = operation.get("operationId", "")
        for status, response in operation.get("responses", {}).items():
            if not status.startswith("2"):
                continue
            if op_id in CREATING or op_id in ("read_job", "cancel_job"):
                response["links"] = dict(job_links)
            elif op_id in ("create_batch", "read_batch", "cancel_batch"):
                response["links"] = dict(batch_links)
            elif op_id == "list_batches":
                response["links"] = {
                    "NextPage": {"operationId": "list_batches", "parameters": {"cursor": "$response.body#/next_cursor"}}
                }
            elif op_id == "list_jobs":
                response["links"] = {
                    "NextPage": {"operationId": "list_jobs", "parameters": {"cursor": "$response.body#/next_cursor"}}
                }
    return result



def add_model_versions(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: ``model_version`` of each creating request is an enum of the
    versions this deployment serves for its kind (``jobs.model_versions.available``, read now, like the live
    ``wait`` maximum), or empty for the default; anything else is 422 UNKNOWN_MODEL_VERSION. A batch's lists
    the versions of every batchable kind (each item must use one of its ``kind``'s)."""
    from jobs import model_versions

    def versions(*kinds: str) -> list[str]:
        return list(dict.fromkeys(ref.version for kind in kinds for ref in model_versions.available(kind)))

    components = result.get("components", {}).get("schemas", {})
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            op_id = operation.get("operationId", "")
            if op_id in KIND_OF_OPERATION:
                allowed = versions(KIND_OF_OPERATION[op_id])
            elif op_id == "create_batch":
                allowed = versions(*BATCHABLE_KINDS)
            else:
                continue
            for media in operation.get("requestBody", {}).get("content", {}).values():
                ref = media.get("schema", {}).get("$ref", "")
                field = components.get(ref.rsplit("/", 1)[-1], {}).get("properties", {}).get("model_version")
                if field is not None:
                    field.pop("maxLength", None)
                    field["enum"] = ["", *allowed]
    return result


# A single-input job's input is exactly one of these request fields (jobs.sources.check_one_source).
SOURCE_FIELDS = ("file", "file_url", "upload_id")


def add_one_source_rule(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: a creating request whose input may come from ``file``,
    ``file_url`` or ``upload_id`` says that exactly one of them is sent (non-empty): a ``oneOf`` of three
    ``required`` branches, and a required body. Without it a form with none (or two) is schema-valid, yet the
    server answers 400 VALIDATION_ERROR. The ``oneOf`` sits inside an ``allOf`` so generators still build one
    request model with every field (a bare ``oneOf`` becomes a union of three models)."""
    components = result.get("components", {}).get("schemas", {})
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict) or "requestBody" not in operation:
                continue
            for media in operation["requestBody"].get("content", {}).values():
                component = components.get(media.get("schema", {}).get("$ref", "").rsplit("/", 1)[-1], {})
                if not all(name in component.get("properties", {}) for name in SOURCE_FIELDS):
                    continue
                if component["properties"]["file"].get("type") != "string":  # a batch's lists: any of them
                    continue
                component["allOf"] = [{"oneOf": [
                    {"required": [name], "properties": {name: {"minLength": 1}}} for name in SOURCE_FIELDS
                ]}]
                operation["requestBody"]["required"] = True
    return result
