"""OpenAPI schema additions: the API-key security scheme and the error shape on every operation.

Without an extension drf-spectacular cannot describe ``ApiKeyAuthentication`` (``check --deploy`` warns and
the schema has no security requirement), and without documented error responses every 4xx the API
answers is "undocumented" to a client generator or a contract tester (schemathesis). Every operation under
``/api/`` therefore gets a ``default`` response with the one error shape of ``audioseal_site.errors``.

Imported by ``audioseal_site.urls`` so the extension is registered before any schema is generated.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "description": "Stable upper-case code, e.g. FILE_TOO_LARGE."},
                "message": {"type": "string"},
                "details": {"type": "object", "additionalProperties": True},
            },
        }
    },
}


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key of your organisation: `Authorization: Bearer <api key>`.",
        }


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: the error shape as every API operation's ``default`` response."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("Error", ERROR_SCHEMA)
    ref = {"$ref": "#/components/schemas/Error"}
    for path, operations in result.get("paths", {}).items():
        if not path.startswith("/api/"):
            continue
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            operation["responses"].setdefault(
                "default",
                {"description": "An error: see `error.code`.", "content": {"application/json": {"schema": ref}}},
            )
    return result
