"""AudioSeal Studio's Python SDK: ``Client`` (typed models, retries that honour ``Retry-After``, an
``Idempotency-Key`` on every job creation, ``wait`` long-polls, downloads, pagination) and the ``studio``
command line (``audioseal_studio.cli``). A client of the HTTP API only: it imports nothing of the server."""

from audioseal_studio._version import __version__
from audioseal_studio.client import Client, RetryEvent, new_idempotency_key
from audioseal_studio.errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    GoneError,
    JobFailedError,
    NotFoundError,
    PayloadTooLargeError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    StudioError,
    UnprocessableError,
    UnsupportedMediaError,
    WaitTimeoutError,
)
from audioseal_studio.models import (
    BeatsyncResult,
    DetectionResult,
    DetectionSegment,
    EmbedResult,
    EmotionResult,
    Job,
    JobKind,
    JobPage,
    JobStatus,
    Usage,
    WebhookDelivery,
)
from audioseal_studio.retries import RetryPolicy

__all__ = [
    "APIConnectionError", "APIError", "APITimeoutError", "AuthenticationError", "BadRequestError",
    "BeatsyncResult", "Client", "ConflictError", "DetectionResult", "DetectionSegment", "EmbedResult",
    "EmotionResult", "GoneError", "Job", "JobFailedError", "JobKind", "JobPage", "JobStatus", "NotFoundError",
    "PayloadTooLargeError", "PaymentRequiredError", "PermissionDeniedError", "RateLimitError", "RetryEvent",
    "RetryPolicy", "ServerError", "StudioError", "UnprocessableError", "UnsupportedMediaError", "Usage",
    "WaitTimeoutError", "WebhookDelivery", "__version__", "new_idempotency_key",
]
