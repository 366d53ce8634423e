"""Billing's reactions to other apps' signals (connected in ``BillingConfig.ready``)."""

from __future__ import annotations

from typing import Any

from accounts.models import Tenant
from billing import services


def give_new_tenant_a_subscription(sender: Any, *, tenant: Tenant, **kwargs: Any) -> None:
    """``accounts.signals.tenant_created``: the new tenant starts on the default plan, in its own transaction."""
    services.on_tenant_created(tenant)
