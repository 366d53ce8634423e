"""The webhook event types: the one list the endpoint filter, the API schema and the dashboard offer.

An endpoint's ``event_types`` allow-list holds names from ``EVENT_TYPES`` (empty = every type). A new event
(say ``batch.completed``) is declared here and recorded through ``jobs.webhooks.outbox.record_event``.
``webhook.test`` is sent only when someone asks for it, so it is never filtered.
"""

from __future__ import annotations

TEST_EVENT = "webhook.test"

EVENT_TYPES: dict[str, str] = {
    "job.succeeded": "A job finished with a result.",
    "job.failed": "A job failed (the payload's error_code says why).",
    "job.canceled": "A job was canceled before it finished.",
}

# What a person asked for explicitly: delivered whatever the endpoint's filter says.
UNFILTERED = frozenset({TEST_EVENT})


def job_event(status: str) -> str:
    """The event type of a job's final status (``succeeded`` → ``job.succeeded``)."""
    return f"job.{status}"


def is_wanted(event_type: str, allow_list: list[str]) -> bool:
    """Whether an endpoint with this ``event_types`` allow-list receives the event (empty = everything).

    Anything but a list (a hand edit of the JSON field) counts as no filter rather than a substring match."""
    allowed = allow_list if isinstance(allow_list, list) else []
    return event_type in UNFILTERED or not allowed or event_type in allowed
