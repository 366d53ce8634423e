"""Billing hooks that the rest of the platform calls. Plans, quotas and the ledger build on these."""

from __future__ import annotations


def on_tenant_created(tenant) -> None:
    """Give a new tenant its starting plan. Nothing to do until plans exist."""


def reserve(job) -> None:
    """Reserve the job's audio seconds against the tenant's quota, inside the job's creation transaction."""


def on_job_final(job) -> None:
    """Settle (succeeded) or release (failed, canceled) the job's reservation, inside the transition."""
