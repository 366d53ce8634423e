"""Seed the Free/Pro/Enterprise plans, give existing tenants a subscription, and guard the ledger.

The trigger makes ``billing_usageevent`` append-only for every database client, not only for the ORM
(which refuses updates and deletes itself): UPDATE and DELETE raise. TRUNCATE (test flushes) is unaffected.
"""

from datetime import UTC, datetime

from django.db import migrations

from billing.seed import ensure_seed_plans

LEDGER_GUARD = """
CREATE OR REPLACE FUNCTION billing_usageevent_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'billing_usageevent is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER billing_usageevent_append_only
    BEFORE UPDATE OR DELETE ON billing_usageevent
    FOR EACH ROW EXECUTE FUNCTION billing_usageevent_append_only();
"""

LEDGER_GUARD_REVERSE = """
DROP TRIGGER IF EXISTS billing_usageevent_append_only ON billing_usageevent;
DROP FUNCTION IF EXISTS billing_usageevent_append_only();
"""


def seed(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    Subscription = apps.get_model("billing", "Subscription")
    Tenant = apps.get_model("accounts", "Tenant")
    ensure_seed_plans(Plan)
    free = Plan.objects.get(code="free")
    now = datetime.now(UTC)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + (start.month == 12), month=start.month % 12 + 1)
    for tenant in Tenant.objects.filter(subscription__isnull=True):
        Subscription.objects.create(tenant=tenant, plan=free, current_period_start=start, current_period_end=end)


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]

    operations = [
        migrations.RunPython(seed, migrations.RunPython.noop),
        migrations.RunSQL(LEDGER_GUARD, LEDGER_GUARD_REVERSE),
    ]
