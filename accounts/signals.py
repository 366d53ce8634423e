"""Signals accounts sends so that apps above it can react without accounts importing them.

``tenant_created(sender, tenant)``: sent by ``accounts.services.create_tenant`` inside its transaction,
after the tenant (and its owner's membership) exist. Receivers run in that transaction: an exception rolls
the new tenant back. Billing gives the tenant its subscription here (``billing.apps.BillingConfig.ready``).
"""

from __future__ import annotations

from django.dispatch import Signal

tenant_created = Signal()
