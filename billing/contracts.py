"""What billing is told about a job: the contract between ``jobs`` and ``billing``.

Billing sits below jobs (``core`` ← ``accounts`` ← ``billing`` ← ``jobs``), so it never imports the ``Job``
model nor reads its status. Jobs builds a ``BillableJob`` from its row (``jobs.services.billable_job``) and
passes it to ``billing.services.reserve`` / ``on_job_final`` / ``settle`` / ``release``. The dataclass holds
exactly what billing needs to reserve, bill or release a job, and nothing else: a new Job column is not a
billing concern until it is added here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class BillableJob:
    """One job as billing sees it.

    ``audio_seconds`` is the billable input duration (the upload's at submission; what the job actually
    consumed at its final transition). ``succeeded`` is only meaningful for ``on_job_final``: whether the job
    ended in success (settle) or not (release).
    """

    job_id: uuid.UUID
    tenant_id: uuid.UUID
    kind: str
    audio_seconds: float | None
    succeeded: bool = False
